"""The RQ job functions. Each takes JSON-serialisable ids only (never a secret) and finds the rest in the
runtime; how they are queued (timeouts, retries, TTLs) is ``queueing``'s.

Coalescing (SPEC section 3) works like a controller's work queue: intake sets ``pending`` and enqueues
only when it was not set; the job takes the task's lock *first* and clears ``pending`` *then*, so an
event while the job waits for the lock adds nothing, and one while it runs makes it run once more.
A job evaluates its task in a shared pass with other waiting tasks (``workers.passes``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog
from rq import get_current_job

import keys
import metrics
import runtime
from bitrix.errors import OperationTimeLimit
from portals.tokens import PortalInactive
from queueing import RECHECK_EVENT, enqueue_evaluation, enqueue_recheck, recheck_event_id
from runtime import Runtime
from workers.evaluation import Trigger
from workers.locks import KeptLock
from workers.passes import (
    BUSY_RETRY_SECONDS,
    follow_up,
    hand_over,
    note_tasks,
    pause_delay,
    requeue_noted,
    shared_pass,
    take_own_task,
)
from workers.sweeps import SweepBusy, run_sweep

log = structlog.get_logger(__name__)

LOCK_TTL_SECONDS = 15
"""A task lock's TTL, renewed every 5 s while its evaluation runs: a killed worker frees it within 15 s."""
FAIR_WAIT_SECONDS = 2.0
"""Application mode: a job whose portal's budget would make it wait longer than this steps back in the queue,
so that one throttled portal never holds the workers the others need."""
LOCK_WAIT_SECONDS = 10
"""How long a job waits for the task's running evaluation before stepping back in the queue."""
PORTAL_BUSY_RETRY_SECONDS = 2
"""When another pass of the portal runs, how soon a recheck (or a rerun) tries again."""


def evaluate_task(portal_id: str, task_id: int, cause: str = "event", event_name: str | None = None,
                  event_id: str | None = None, rules_digest: str | None = None) -> dict[str, Any]:
    """Evaluate this task, and with it up to TASKWARDEN_PASS_SIZE - 1 others that wait (one shared pass).

    Every waiting task is in the portal's waiting hash with the id of its queued job. A job first takes
    its own task out: if it is gone, an earlier pass took it along and the job has nothing to do.
    Otherwise it takes the task's lock, claims other waiting tasks (removing their jobs from the queue, so
    no worker forks for nothing), locks the free ones, clears their pending marks and evaluates them all
    together: reads and writes share batch requests.
    """
    try:  # a job for a portal we do not serve fails loudly; one for a portal uninstalled since just ends
        rt = runtime.current().for_portal(portal_id)
    except PortalInactive as inactive:
        return _portal_inactive(portal_id, inactive)
    check_rules(rt, portal_id, rules_digest)

    def again(delay: float) -> None:
        enqueue_evaluation(rt.queue(), portal_id, task_id, cause=cause, event_name=event_name, event_id=event_id,
                           rules_digest=rules_digest, delay_seconds=delay)

    if (wait := _fair_wait(rt)) > FAIR_WAIT_SECONDS:
        return _step_back(portal_id, wait, again, "budget_wait")
    job = get_current_job()
    inflight = keys.inflight(portal_id, job.id if job else f"direct-{task_id}")
    noted = bool(rt.redis.exists(inflight))  # this job was killed mid-pass and is run again by RQ
    trigger = Trigger(cause, event_name, event_id)
    portal_pass = KeptLock(rt.redis, keys.pass_lock(portal_id), LOCK_TTL_SECONDS, owner=job.id if job else None)
    if not portal_pass.acquire():
        if noted:
            return _step_aside(rt, portal_id, task_id, inflight, trigger, again, PORTAL_BUSY_RETRY_SECONDS)
        # Another pass of this portal runs: a second one would only split the batches, and the budget is the
        # portal's anyway. The task stays waiting, and that pass's follow-up takes it along.
        if hand_over(rt, portal_id, portal_pass):
            metrics.count(portal_id, "evaluations", outcome="handed_over")
            return {"status": "handed_over"}
    try:
        if not noted and not take_own_task(rt, portal_id, task_id, inflight):
            metrics.count(portal_id, "evaluations", outcome="coalesced")
            return {"status": "coalesced"}
        return _run_pass(rt, portal_id, task_id, inflight, trigger, noted=noted, again=again,
                         relist_own=job.id if job else "")
    finally:
        portal_pass.release()
        follow_up(rt, portal_id)


def recheck_tasks(portal_id: str, task_ids: list[int], rules_digest: str | None = None) -> dict[str, Any]:
    """Read tasks a pass wrote a moment ago again, all in one pass (``queueing.queue_recheck``).

    The job notes its tasks as if it had claimed them, so that a rerun after a kill, the pass itself and its
    failures treat them like any claimed task; a retry after a failure notes them again.
    """
    try:
        rt = runtime.current().for_portal(portal_id)
    except PortalInactive as inactive:
        return _portal_inactive(portal_id, inactive)
    check_rules(rt, portal_id, rules_digest)
    own = task_ids[0]

    def again(delay: float) -> None:
        enqueue_evaluation(rt.queue(), portal_id, own, cause="recheck", event_name=RECHECK_EVENT,
                           event_id=recheck_event_id(own), rules_digest=rules_digest, delay_seconds=delay)

    def later(delay: float) -> None:
        enqueue_recheck(rt.queue(), portal_id, task_ids, rules_digest=rules_digest, delay_seconds=delay)

    if (wait := _fair_wait(rt)) > FAIR_WAIT_SECONDS:
        return _step_back(portal_id, wait, later, "budget_wait")
    job = get_current_job()
    inflight = keys.inflight(portal_id, job.id if job else f"recheck-{own}")
    noted = bool(rt.redis.exists(inflight))  # killed mid-pass and run again by RQ
    trigger = Trigger("recheck", RECHECK_EVENT, recheck_event_id(own))
    portal_pass = KeptLock(rt.redis, keys.pass_lock(portal_id), LOCK_TTL_SECONDS, owner=job.id if job else None)
    if not portal_pass.acquire():
        if noted:
            return _step_aside(rt, portal_id, own, inflight, trigger, again, PORTAL_BUSY_RETRY_SECONDS)
        return _step_back(portal_id, PORTAL_BUSY_RETRY_SECONDS, later, "busy")
    try:
        if not noted:
            note_tasks(rt, inflight, task_ids)
        return _run_pass(rt, portal_id, own, inflight, trigger, noted=True, again=again, relist_own=None)
    finally:
        portal_pass.release()
        follow_up(rt, portal_id)


def _fair_wait(rt: Runtime) -> float:
    """Application mode: how long this portal's budget would keep a job waiting (0 in webhook mode)."""
    return rt.client.budget_wait() if rt.settings.app_mode else 0.0


def _step_back(portal_id: str, wait: float, again: Callable[[float], object], outcome: str) -> dict[str, Any]:
    """Queue the job again for ``wait`` seconds from now, rather than hold a worker other portals need: this
    portal's budget is spent for a while (``budget_wait``), or another of its passes runs (``busy``)."""
    again(wait)
    metrics.count(portal_id, "evaluations", outcome=outcome)
    return {"status": outcome, "retry_in": round(wait, 1)}


def _run_pass(rt: Runtime, portal_id: str, task_id: int, inflight: str, trigger: Trigger, *, noted: bool,
              again: Callable[[float], None], relist_own: str | None) -> dict[str, Any]:
    """Run the job's shared pass (the caller holds the portal's pass lock), holding its own task's lock.

    ``again(delay)`` queues the own task anew when the job steps back; ``relist_own`` (the job's id) puts the
    own task back in the waiting hash when the job fails, for RQ's retry to take out again; None when the retry
    notes its tasks itself.
    """
    lock = KeptLock(rt.redis, keys.task_lock(portal_id, task_id), LOCK_TTL_SECONDS)
    if not lock.acquire(blocking_timeout=LOCK_WAIT_SECONDS):
        # Another evaluation of this task (a sweep's, the CLI's) runs long. Our pending mark stays set, so
        # later events keep coalescing onto this evaluation, which steps back and tries again shortly.
        return _step_aside(rt, portal_id, task_id, inflight, trigger, again, BUSY_RETRY_SECONDS)
    try:
        decisions, tasks_done = shared_pass(rt, portal_id, task_id, inflight, trigger, noted=noted)
    except OperationTimeLimit as paused:
        # The portal blocked a method for a while: come back when it is open again, keeping our retries.
        delay = pause_delay(paused)
        again(delay)
        rt.redis.delete(inflight)  # after the task is listed again, so that no moment loses it
        log.warning("evaluation.method_paused", method=paused.method, retry_in=round(delay))
        metrics.count(portal_id, "evaluations", outcome="paused")
        return {"status": "paused", "method": paused.method}
    except BaseException:  # RQ retries this job: it must find its task waiting again
        if relist_own is not None:
            rt.redis.hset(keys.waiting(portal_id), str(task_id), relist_own)
        rt.redis.delete(inflight)
        raise
    finally:
        lock.release()
    metrics.count(portal_id, "evaluations", tasks_done, outcome="done")
    outcomes = [d.outcome for d in decisions]
    log.info("evaluation.done", task_id=task_id, tasks=tasks_done, decisions=len(decisions),
             changed=outcomes.count("changed"), requests=rt.client.stats.requests)
    return {"status": "done", "tasks": tasks_done, "decisions": len(decisions), "outcomes": outcomes}


def _step_aside(rt: Runtime, portal_id: str, task_id: int, inflight: str, trigger: Trigger,
                again: Callable[[float], None], delay: float) -> dict[str, Any]:
    """The job's own task and any noted under it get jobs for ``delay`` seconds from now; this one ends."""
    again(delay)
    requeue_noted(rt, portal_id, task_id, inflight, trigger, delay)
    rt.redis.delete(inflight)  # after: killed in between, a rerun of this job still has the tasks
    log.info("evaluation.busy", task_id=task_id, retry_in=delay)
    metrics.count(portal_id, "evaluations", outcome="busy")
    return {"status": "busy"}


def check_rules(rt: Runtime, portal_id: str, queued_with: str | None) -> None:
    """Note which rules this worker runs (for ``status``), and say loudly when the process that queued the job
    runs other ones: the worker acts on its own rules, and the operator should know they differ."""
    ours = rt.rules.digest
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hset(keys.rules_running(portal_id), f"worker:{socket.gethostname()}", ours)
    if queued_with is not None and queued_with != ours:
        pipe.hincrby(keys.rules_mismatches(portal_id), f"{queued_with}->{ours}", 1)
        log.error("rules.mismatch", queued_with=queued_with, worker_rules=ours,
                  hint="the web and the workers run different rules files: restart every process with the same one")
        metrics.count(portal_id, "rules_mismatches")
    pipe.execute()


def run_sweep_job(portal_id: str, kind: str) -> dict[str, Any]:
    """A scheduled sweep; a failure leaves the cursor alone, and the next slot runs it again."""
    try:
        rt = runtime.current().for_portal(portal_id)
    except PortalInactive as inactive:
        return _portal_inactive(portal_id, inactive)
    try:
        return {"status": "done", **asdict(run_sweep(rt, kind))}
    except SweepBusy:
        log.info("sweep.busy", sweep=kind)
        return {"status": "busy"}


def _portal_inactive(portal_id: str, inactive: PortalInactive) -> dict[str, Any]:
    """Uninstalled or waiting for a reinstall: the job ends without work and without a retry."""
    log.info("job.portal_inactive", portal=portal_id, reason=inactive.description)
    metrics.count(portal_id, "evaluations", outcome="portal_inactive")
    return {"status": "portal_inactive"}
