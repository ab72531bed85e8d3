"""The simulated REST methods; importing this package fills the method tables in `sandbox.calls`."""

from sandbox.methods import (
    batch,
    batch_v3,
    elapsed,
    event_bind,
    offline_events,
    system,
    tasks_classic,
    tasks_v3,
    userfields,
)

__all__ = ["batch", "batch_v3", "elapsed", "event_bind", "offline_events", "system", "tasks_classic", "tasks_v3",
           "userfields"]
