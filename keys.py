"""Every Redis key Taskwarden writes, and nothing else formats one.

All keys start with ``taskwarden:{portal}:`` so that state is scoped per portal and a test run (or
another deployment sharing the server) can be told apart by prefix. RQ's own keys (``rq:...``) are
RQ's business; the queue names are ``queueing``'s.
"""

from __future__ import annotations

PREFIX = "taskwarden"


PORTALS = f"{PREFIX}:portals"
"""Application mode: the member ids of the installed portals (a set); each portal's record is its own hash."""


def _key(portal: str, *parts: object) -> str:
    return ":".join((PREFIX, portal, *(str(part) for part in parts)))


def pending(portal: str, task_id: int) -> str:
    """Set while an evaluation of the task waits in the queue (coalescing, SPEC section 3)."""
    return _key(portal, "pending", task_id)


def pass_lock(portal: str) -> str:
    """Held while one of the portal's evaluation passes runs: its other jobs hand their tasks over to it."""
    return _key(portal, "lock", "pass")


def handed_over(portal: str) -> str:
    """Set when a job left its task to the portal's running pass: that pass queues a follow-up when it ends."""
    return _key(portal, "handed_over")


def task_lock(portal: str, task_id: int) -> str:
    """Held while the task is evaluated: never two evaluations of one task at once."""
    return _key(portal, "lock", "task", task_id)


def budget(portal: str) -> str:
    """The shared request budget's theoretical arrival time (GCRA, milliseconds)."""
    return _key(portal, "budget")


def v3_support(portal: str) -> str:
    """Whether the portal has the REST 3.0 API (``1``/``0``), remembered after the first answer."""
    return _key(portal, "v3")


def audit_unknown(portal: str) -> str:
    """Decisions about tasks the portal does not show: a short capped stream of its own, apart from the trail."""
    return _key(portal, "audit", "unknown")


def elapsed_task_filter(portal: str) -> str:
    """Whether the portal's ``task.elapseditem.getlist`` filters by TASK_ID (``1``/``0``), from its manifest."""
    return _key(portal, "elapsed-task-filter")


def audit(portal: str) -> str:
    """The audit trail: a capped Redis stream of decisions, newest last."""
    return _key(portal, "audit")


def report(portal: str, rule: str) -> str:
    """Open (non-compliant) decisions of one rule, a hash keyed by task id."""
    return _key(portal, "report", rule)


def report_rules(portal: str) -> str:
    """The rules the workers evaluated, with their policy and mode as run (a hash: rule -> JSON)."""
    return _key(portal, "report-rules")


def sweep_lock(portal: str, kind: str) -> str:
    """Held while a sweep of this kind runs: two sweeps of one kind never run at once."""
    return _key(portal, "lock", "sweep", kind)


def cursor(portal: str, kind: str) -> str:
    """Where the next sweep of this kind starts (a hash; advanced only when a sweep completes)."""
    return _key(portal, "cursor", kind)


def sweeps_completed(portal: str) -> str:
    """When each kind of sweep last completed (a hash: kind -> Unix seconds)."""
    return _key(portal, "sweeps", "completed")


def missed_by_events(portal: str) -> str:
    """Changes first made by a sweep that events should have triggered (a hash: rule -> count)."""
    return _key(portal, "missed_by_events")


def schedule_last(portal: str, kind: str) -> str:
    """The latest schedule slot (Unix seconds) enqueued for this kind of sweep."""
    return _key(portal, "schedule", kind, "last")


def schedule_slot(portal: str, kind: str, slot: int) -> str:
    """Claimed by the one scheduler process that enqueues this slot."""
    return _key(portal, "schedule", kind, slot)


def running(portal: str, task_id: int) -> str:
    """The evaluations of the task running right now (a sorted set of holder marks scored by their expiry,
    renewed while each runs, so a killed holder's mark lapses on its own); more than one is a violation."""
    return _key(portal, "running", task_id)


def lock_violations(portal: str) -> str:
    """Tasks seen evaluated twice at once (a hash: task id -> count); empty when locks work."""
    return _key(portal, "lock_violations")


def operating(portal: str) -> str:
    """Per method, the portal's last reported operating seconds and reset time (a hash)."""
    return _key(portal, "operating")


def paused(portal: str, method: str) -> str:
    """Set while the portal blocks a method for its operating time (expires at operating_reset_at)."""
    return _key(portal, "paused", method)


def spool_mark(portal: str, digest: str) -> str:
    """Set once a spooled event line has been queued, so a re-run drain skips it."""
    return _key(portal, "spool", digest)


def metrics(portal: str) -> str:
    """Counters for /metrics (a hash: [name, labels] as JSON -> value), summed over all processes."""
    return _key(portal, "metrics")


def scheduler_heartbeat(portal: str, hostname: str) -> str:
    """Refreshed by a scheduler process on every tick (its container health check reads it)."""
    return _key(portal, "scheduler", hostname)


def waiting(portal: str) -> str:
    """Tasks with an evaluation queued (a set); a job claims others from it to evaluate them together."""
    return _key(portal, "waiting")


def inflight(portal: str, job_id: str) -> str:
    """The tasks an evaluation job took along (a set), kept until its pass ends: a rerun after a kill
    takes the same tasks up again."""
    return _key(portal, "inflight", job_id)


def job_template(portal: str, digest: str) -> str:
    """The hash fields every evaluation job shares (a hash, expiring); intake's script copies it into each
    new job. ``digest`` names its content, so a changed RQ or setting never meets an old template."""
    return _key(portal, "job-template", digest)


def sweep_skipped(portal: str, kind: str) -> str:
    """Tasks a sweep of this kind skipped because an event job was evaluating them (a set of task ids). That
    job may have read the task before what the sweep found, so the next sweep of the kind evaluates them."""
    return _key(portal, "sweep-skipped", kind)


def rules_running(portal: str) -> str:
    """The rules digest each process last ran (a hash: ``worker:{host}`` -> digest), for ``status``."""
    return _key(portal, "rules", "running")


def rules_mismatches(portal: str) -> str:
    """Jobs a worker ran with other rules than the process that queued them (a hash: ``queued->ran`` -> count)."""
    return _key(portal, "rules", "mismatches")


def portal_record(portal: str) -> str:
    """Application mode: the portal's record (a hash; tokens sealed)."""
    return _key(portal, "portal")


def token_refresh_lock(portal: str) -> str:
    """Held by the one process refreshing the portal's OAuth tokens; the others wait and use its result."""
    return _key(portal, "lock", "token-refresh")


def last_event(portal: str) -> str:
    """When the portal's last event arrived (Unix seconds)."""
    return _key(portal, "last-event")


def offline_batches(portal: str) -> str:
    """Offline batches reserved (``process_id``) and not yet confirmed (a set): the next drain reads them again."""
    return _key(portal, "offline", "batches")


def offline_extended(portal: str) -> str:
    """Whether the portal has reserve-and-confirm for its offline queue (``1``/``0``, asked once a day)."""
    return _key(portal, "offline", "extended")
