"""The whole portal's state: one object, in memory, guarded by one lock (the server is threaded)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.appstate import AppState
from sandbox.config import SandboxConfig, with_overrides
from sandbox.events import Outbox
from sandbox.limits import LeakyBucket, OperatingClock

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
"""REST 3.0 keeps a successful write's answer for 24 h (§2.5)."""


@dataclass
class Fault:
    """An injected failure: the next `times` calls of `method` ("*" = any) answer with it."""

    method: str
    status: int = 500
    error: str = "INTERNAL_SERVER_ERROR"
    description: str = "Internal server error"
    times: int = 1
    envelope: str = "classic"
    in_batch: bool = False
    delay: float = 0.0
    skip: int = 0
    """Matching calls let through untouched before this fault applies (e.g. the read before the write)."""
    after: bool = False
    """The call runs, then its answer is replaced by the fault (status 0: the connection drops), as when an
    answer is lost on the way back."""


@dataclass
class Replay:
    """A stored REST 3.0 write answer for an Idempotency-Key."""

    fingerprint: str
    expires: float
    status: int
    body: dict[str, Any]


@dataclass
class Portal:
    """Tasks, time entries, userfields, limits, faults and logs of one simulated portal."""

    startup: SandboxConfig
    config: SandboxConfig
    lock: threading.RLock = field(default_factory=threading.RLock)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    userfields: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    request_seq: int = 0
    bucket: LeakyBucket = field(default_factory=lambda: LeakyBucket(2.0, 50))
    clock: OperatingClock = field(default_factory=OperatingClock)
    faults: list[Fault] = field(default_factory=list)
    replays: dict[tuple[int, str, str], Replay] = field(default_factory=dict)
    outbox: Outbox = field(default_factory=Outbox)
    client_endpoint: str = "http://127.0.0.1/rest/"
    app: AppState | None = None
    """Set on an application-mode portal (reached with OAuth tokens); None on the webhook portal."""

    def __post_init__(self) -> None:
        self.bucket = LeakyBucket(self.config.rate, self.config.burst)

    def new_id(self, kind: str) -> int:
        """Next id of `kind` ("task", "entry", "field"); ids are never reused."""
        value = self.next_ids.get(kind, 1)
        self.next_ids[kind] = value + 1
        return value

    def reset(self, overrides: dict[str, Any]) -> None:
        """Empty everything and apply `overrides` on top of the startup settings."""
        config = with_overrides(self.startup, overrides)
        self.config = config
        self.tasks.clear()
        self.entries.clear()
        self.userfields.clear()
        self.next_ids.clear()
        self.requests.clear()
        self.faults.clear()
        self.replays.clear()
        self.bucket = LeakyBucket(config.rate, config.burst)
        self.clock = OperatingClock()
        self.outbox.clear()

    def configure(self, overrides: dict[str, Any]) -> None:
        """Change settings in place; limits follow the new rate and burst."""
        self.config = with_overrides(self.config, overrides)
        self.bucket.rate = self.config.rate
        self.bucket.burst = self.config.burst

    def log_request(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one REST request to the log, numbering it."""
        self.request_seq += 1
        entry = {"seq": self.request_seq, "at": time.time(), **entry}
        self.requests.append(entry)
        return entry

    def take_fault(self, method: str, in_batch: bool) -> Fault | None:
        """Consume one use of the first fault matching `method`, if any."""
        for fault in self.faults:
            if fault.in_batch == in_batch and fault.method in (method, "*"):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                if fault.times > 0:  # times <= 0 at creation: until cleared
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None
