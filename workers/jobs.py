"""RQ jobs. Each takes JSON-serialisable ids only (never a secret) and finds the rest in the runtime.

Coalescing (SPEC section 3) works like a controller's work queue: intake sets ``pending`` and enqueues
only when it was not set; the job takes the task's lock *first* and clears ``pending`` *then*, so an
event while the job waits for the lock adds nothing, and one while it runs makes it run once more.
A job evaluates its task in a shared pass with other waiting tasks (``workers.passes``).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any
from uuid import uuid4

import structlog
from rq import Queue, Retry, get_current_job
from rq.job import Job

import keys
import metrics
import runtime
from bitrix.errors import OperationTimeLimit
from workers.evaluation import Trigger
from workers.locks import KeptLock
from workers.passes import shared_pass, take_own_task

log = structlog.get_logger(__name__)

EVALUATION_TIMEOUT_SECONDS = 120
"""Longest one evaluation may run before RQ stops it (budget waits included)."""
LOCK_TTL_SECONDS = 15
"""A task lock's TTL, renewed every 5 s while its evaluation runs: a killed worker frees it within 15 s."""
LOCK_WAIT_SECONDS = 10
"""How long a job waits for the task's running evaluation before stepping back in the queue."""
BUSY_RETRY_SECONDS = 5
PENDING_TTL_SECONDS = 900
"""Safety expiry of the pending mark, should its job vanish (e.g. Redis data lost)."""
RETRY_INTERVALS_SECONDS = (0, 30, 90)
"""Delays before RQ re-runs a failed evaluation (jittered per job). The first is 0 on purpose: RQ then
requeues at once instead of scheduling, so a job abandoned by a killed worker does not also wait for a
scheduler (whose lock a killed worker may hold for a minute) before it runs again."""
FAILURE_TTL_SECONDS = 7 * 86400
RESULT_TTL_SECONDS = 3600


def evaluation_spec(portal_id: str, task_id: int, cause: str, event_name: str | None,
                    event_id: str | None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An evaluation job's kwargs, meta (log context) and description; intake's script builds the same job."""
    kwargs = {"portal_id": portal_id, "task_id": task_id, "cause": cause, "event_name": event_name,
              "event_id": event_id}
    meta = {"log_ctx": {"task_id": task_id, "event_id": event_id, "portal": portal_id}}
    return kwargs, meta, f"evaluate task {task_id} ({cause})"


def enqueue_evaluation(queue: Queue, portal_id: str, task_id: int, *, cause: str = "event",
                       event_name: str | None = None, event_id: str | None = None,
                       delay_seconds: float = 0, pipeline: Any = None) -> Job:
    """Queue one evaluation of a task with our retry and TTL policy, and list the task as waiting."""
    job_id = str(uuid4())
    kwargs, meta, description = evaluation_spec(portal_id, task_id, cause, event_name, event_id)
    options: dict[str, Any] = {
        "job_id": job_id, "kwargs": kwargs, "meta": meta, "description": description,
        "job_timeout": EVALUATION_TIMEOUT_SECONDS, "result_ttl": RESULT_TTL_SECONDS,
        "failure_ttl": FAILURE_TTL_SECONDS, "retry": Retry(max=len(RETRY_INTERVALS_SECONDS), interval=_jittered()),
    }
    if pipeline is not None:  # RQ watches keys on the pipeline first; ours comes after, in the same MULTI
        job = queue.enqueue(evaluate_task, pipeline=pipeline, **options)
        pipeline.hset(keys.waiting(portal_id), str(task_id), job_id)
        return job
    queue.connection.hset(keys.waiting(portal_id), str(task_id), job_id)  # before the job can be picked up
    if delay_seconds:
        return queue.enqueue_in(dt.timedelta(seconds=delay_seconds), evaluate_task, **options)
    return queue.enqueue(evaluate_task, **options)


def evaluate_task(portal_id: str, task_id: int, cause: str = "event", event_name: str | None = None,
                  event_id: str | None = None) -> dict[str, Any]:
    """Evaluate this task, and with it up to TASKWARDEN_PASS_SIZE - 1 others that wait (one shared pass).

    Every waiting task is in the portal's waiting hash with the id of its queued job. A job first takes
    its own task out: if it is gone, an earlier pass took it along and the job has nothing to do.
    Otherwise it takes the task's lock, claims other waiting tasks (removing their jobs from the queue, so
    no worker forks for nothing), locks the free ones, clears their pending marks and evaluates them all
    together: reads and writes share batch requests.
    """
    rt = runtime.current()
    rt.portal_by_id(portal_id)  # a job for a portal we do not serve fails loudly, it is not guessed at
    job = get_current_job()
    inflight = keys.inflight(portal_id, job.id if job else f"direct-{task_id}")
    rerun = bool(rt.redis.exists(inflight))  # this job was killed mid-pass and is run again by RQ
    if not rerun and not take_own_task(rt, portal_id, task_id, inflight):
        metrics.count(portal_id, "evaluations", outcome="coalesced")
        return {"status": "coalesced"}
    lock = KeptLock(rt.redis, keys.task_lock(portal_id, task_id), LOCK_TTL_SECONDS)
    if not lock.acquire(blocking_timeout=LOCK_WAIT_SECONDS):
        # Another evaluation of this task runs long. Our pending mark stays set, so later events keep
        # coalescing onto this evaluation, which steps back and tries again shortly (a job of its own).
        enqueue_evaluation(rt.queue(), portal_id, task_id, cause=cause, event_name=event_name,
                           event_id=event_id, delay_seconds=BUSY_RETRY_SECONDS)
        rt.redis.delete(inflight)  # after: killed in between, a rerun of this job still has the task
        log.info("evaluation.busy", task_id=task_id)
        metrics.count(portal_id, "evaluations", outcome="busy")
        return {"status": "busy"}
    try:
        decisions, tasks_done = shared_pass(rt, portal_id, task_id, inflight, Trigger(cause, event_name, event_id),
                                             rerun=rerun)
    except OperationTimeLimit as paused:
        # The portal blocked a method for a while: come back when it is open again, keeping our retries.
        delay = max(BUSY_RETRY_SECONDS, (paused.reset_at or 0) - time.time())
        enqueue_evaluation(rt.queue(), portal_id, task_id, cause=cause, event_name=event_name,
                           event_id=event_id, delay_seconds=delay)
        rt.redis.delete(inflight)  # after the task is listed again, so that no moment loses it
        log.warning("evaluation.method_paused", method=paused.method, retry_in=round(delay))
        metrics.count(portal_id, "evaluations", outcome="paused")
        return {"status": "paused", "method": paused.method}
    except BaseException:  # RQ retries this job: it must find its task waiting again
        rt.redis.hset(keys.waiting(portal_id), str(task_id), job.id if job else "")
        rt.redis.delete(inflight)
        raise
    finally:
        lock.release()
    metrics.count(portal_id, "evaluations", tasks_done, outcome="done")
    outcomes = [d.outcome for d in decisions]
    log.info("evaluation.done", task_id=task_id, tasks=tasks_done, decisions=len(decisions),
             changed=outcomes.count("changed"), requests=rt.client.stats.requests)
    return {"status": "done", "tasks": tasks_done, "decisions": len(decisions), "outcomes": outcomes}


def _jittered() -> list[int]:
    return [round(seconds * random.uniform(0.8, 1.2)) for seconds in RETRY_INTERVALS_SECONDS]


SWEEP_JOB_TIMEOUT_SECONDS = 3600


def enqueue_sweep(queue: Queue, portal_id: str, kind: str, *, job_id: str | None = None) -> Job:
    """Queue one sweep; ``job_id`` (one per schedule slot) makes a repeated enqueue of a slot fail."""
    return queue.enqueue(run_sweep_job, kwargs={"portal_id": portal_id, "kind": kind}, job_id=job_id,
                         unique=job_id is not None, job_timeout=SWEEP_JOB_TIMEOUT_SECONDS,
                         result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS,
                         meta={"log_ctx": {"sweep": kind, "portal": portal_id}}, description=f"sweep {kind}")


def run_sweep_job(portal_id: str, kind: str) -> dict[str, Any]:
    """A scheduled sweep; a failure leaves the cursor alone, and the next slot runs it again."""
    from dataclasses import asdict

    from workers.sweeps import SweepBusy, run_sweep

    rt = runtime.current()
    rt.portal_by_id(portal_id)
    try:
        return {"status": "done", **asdict(run_sweep(rt, kind))}
    except SweepBusy:
        log.info("sweep.busy", sweep=kind)
        return {"status": "busy"}
