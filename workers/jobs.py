"""RQ jobs. Each takes JSON-serialisable ids only (never a secret) and finds the rest in the runtime.

Coalescing (SPEC section 3) works like a controller's work queue: intake sets ``pending`` and enqueues
only when it was not set; the job takes the task's lock *first* and clears ``pending`` *then*, so an
event while the job waits for the lock adds nothing, and one while it runs makes it run once more.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any
from uuid import uuid4

import structlog
from redis.commands.core import Script
from rq import Queue, Retry, get_current_job
from rq.job import Job

import keys
import metrics
import runtime
from bitrix.errors import OperationTimeLimit
from workers.evaluation import Trigger, evaluate_tasks
from workers.locks import KeptLock, concurrency_guard, task_locks

log = structlog.get_logger(__name__)

EVALUATION_TIMEOUT_SECONDS = 120
"""Longest one evaluation may run before RQ stops it (budget waits included)."""
LOCK_TTL_SECONDS = 15
"""A task lock's TTL, renewed every 5 s while its evaluation runs: a killed worker frees it within 15 s."""
LOCK_WAIT_SECONDS = 10
"""How long a job waits for the task's running evaluation before stepping back in the queue."""
BUSY_RETRY_SECONDS = 5
INFLIGHT_TTL_SECONDS = 86400
"""How long the tasks of a pass stay noted for a rerun of its job (after a SIGKILL)."""
PENDING_TTL_SECONDS = 900
"""Safety expiry of the pending mark, should its job vanish (e.g. Redis data lost)."""
RETRY_INTERVALS_SECONDS = (0, 30, 90)
"""Delays before RQ re-runs a failed evaluation (jittered per job). The first is 0 on purpose: RQ then
requeues at once instead of scheduling, so a job abandoned by a killed worker does not also wait for a
scheduler (whose lock a killed worker may hold for a minute) before it runs again."""
FAILURE_TTL_SECONDS = 7 * 86400
RESULT_TTL_SECONDS = 3600


def enqueue_evaluation(queue: Queue, portal_id: str, task_id: int, *, cause: str = "event",
                       event_name: str | None = None, event_id: str | None = None,
                       delay_seconds: float = 0, pipeline: Any = None) -> Job:
    """Queue one evaluation of a task with our retry and TTL policy, and list the task as waiting."""
    job_id = str(uuid4())
    options: dict[str, Any] = {
        "job_id": job_id,
        "kwargs": {"portal_id": portal_id, "task_id": task_id, "cause": cause, "event_name": event_name,
                   "event_id": event_id},
        "job_timeout": EVALUATION_TIMEOUT_SECONDS, "result_ttl": RESULT_TTL_SECONDS,
        "failure_ttl": FAILURE_TTL_SECONDS, "retry": Retry(max=len(RETRY_INTERVALS_SECONDS), interval=_jittered()),
        "meta": {"log_ctx": {"task_id": task_id, "event_id": event_id, "portal": portal_id}},
        "description": f"evaluate task {task_id} ({cause})",
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
    if not rerun and not rt.redis.hdel(keys.waiting(portal_id), str(task_id)):
        metrics.count(portal_id, "evaluations", outcome="coalesced")
        return {"status": "coalesced"}
    lock = KeptLock(rt.redis, keys.task_lock(portal_id, task_id), LOCK_TTL_SECONDS)
    if not lock.acquire(blocking_timeout=LOCK_WAIT_SECONDS):
        # Another evaluation of this task runs long. Our pending mark stays set, so later events keep
        # coalescing onto this evaluation, which steps back and tries again shortly.
        enqueue_evaluation(rt.queue(), portal_id, task_id, cause=cause, event_name=event_name,
                           event_id=event_id, delay_seconds=BUSY_RETRY_SECONDS)
        log.info("evaluation.busy", task_id=task_id)
        metrics.count(portal_id, "evaluations", outcome="busy")
        return {"status": "busy"}
    try:
        decisions, tasks_done = _shared_pass(rt, portal_id, task_id, inflight, Trigger(cause, event_name, event_id))
    except OperationTimeLimit as paused:
        # The portal blocked a method for a while: come back when it is open again, keeping our retries.
        delay = max(BUSY_RETRY_SECONDS, (paused.reset_at or 0) - time.time())
        enqueue_evaluation(rt.queue(), portal_id, task_id, cause=cause, event_name=event_name,
                           event_id=event_id, delay_seconds=delay)
        log.warning("evaluation.method_paused", method=paused.method, retry_in=round(delay))
        metrics.count(portal_id, "evaluations", outcome="paused")
        return {"status": "paused", "method": paused.method}
    except BaseException:  # RQ retries this job: it must find its task waiting again
        rt.redis.hset(keys.waiting(portal_id), str(task_id), job.id if job else "")
        raise
    finally:
        lock.release()
    metrics.count(portal_id, "evaluations", tasks_done, outcome="done")
    outcomes = [d.outcome for d in decisions]
    log.info("evaluation.done", task_id=task_id, tasks=tasks_done, decisions=len(decisions),
             changed=outcomes.count("changed"), requests=rt.client.stats.requests)
    return {"status": "done", "tasks": tasks_done, "decisions": len(decisions), "outcomes": outcomes}


def _shared_pass(rt: runtime.Runtime, portal_id: str, task_id: int, inflight: str,
                 trigger: Trigger) -> tuple[list[Any], int]:
    """Claim other waiting tasks, lock the free ones, evaluate them all with ours; returns decisions, count.

    The claimed tasks are noted under this job's id (``inflight``) before anything else happens: if the
    worker is killed, RQ runs the same job again and it takes the same tasks up, since their own jobs
    may meanwhile have ended as "coalesced".
    """
    claimed = _claim(rt, portal_id, task_id, inflight)
    with task_locks(rt.redis, portal_id, claimed, LOCK_TTL_SECONDS) as held:
        busy = set(claimed) - set(held)
        if busy:  # being evaluated elsewhere right now: queue them again for after that
            _requeue(rt, portal_id, sorted(busy), trigger)
        try:
            triggers, event_ids = _triggers(rt, portal_id, task_id, held, trigger)
            with concurrency_guard(rt.redis, portal_id, [task_id, *held]):
                decisions = [d for each, ids in triggers.items()
                             for d in evaluate_tasks(rt, ids, each, event_ids=event_ids)]
        except BaseException:  # the others get jobs of their own again; ours is retried by RQ
            _requeue(rt, portal_id, held, trigger)
            rt.redis.delete(inflight)
            raise
    rt.redis.delete(inflight)
    return decisions, 1 + len(held)


def _claim(rt: runtime.Runtime, portal_id: str, task_id: int, inflight: str) -> list[int]:
    """The other tasks of this pass: those of a killed earlier run of this job, else up to a pass's worth,
    whose own queued jobs are taken off the queue (they would only find their task gone)."""
    noted = {int(raw) for raw in rt.redis.smembers(inflight)}
    if noted:
        return sorted(noted - {task_id})
    fields, job_ids = _claim_script(keys=[keys.waiting(portal_id)], args=[rt.settings.taskwarden_pass_size - 1],
                                    client=rt.redis)
    if not fields:
        rt.redis.sadd(inflight, task_id)
        rt.redis.expire(inflight, INFLIGHT_TTL_SECONDS)
        return []
    claimed = [int(raw) for raw in fields]
    pipe = rt.redis.pipeline()
    pipe.sadd(inflight, task_id, *claimed)
    pipe.expire(inflight, INFLIGHT_TTL_SECONDS)
    queue = rt.queue()
    for job_id in job_ids:
        pipe.lrem(queue.key, 1, job_id)
    removed = pipe.execute()[2:]
    gone = [job_id for job_id, count in zip(job_ids, removed, strict=True) if count]
    if gone:  # off the queue: their hashes go too (a scheduled one stays, and finds its task gone)
        rt.redis.delete(*(queue.job_class.key_for(job_id.decode()) for job_id in gone))
    return claimed


def _requeue(rt: runtime.Runtime, portal_id: str, task_ids: list[int], trigger: Trigger) -> None:
    """Give claimed tasks fresh jobs of their own (their queued jobs were taken off the queue)."""
    if not task_ids:
        return
    with rt.redis.pipeline() as pipe:
        for task_id in task_ids:
            enqueue_evaluation(rt.queue(), portal_id, task_id, cause=trigger.cause, event_name=trigger.event_name,
                               pipeline=pipe)
        pipe.execute()


# KEYS[1] the waiting hash; ARGV[1] how many. Takes up to that many waiting tasks at random, atomically,
# and returns {task ids, their job ids}.
_CLAIM = b"""
local fields = redis.call('HRANDFIELD', KEYS[1], ARGV[1])
if #fields == 0 then return {{}, {}} end
local job_ids = redis.call('HMGET', KEYS[1], unpack(fields))
redis.call('HDEL', KEYS[1], unpack(fields))
return {fields, job_ids}
"""
_claim_script = Script(None, _CLAIM)  # type: ignore[arg-type]  # bytes need no client to hash


def _triggers(rt: runtime.Runtime, portal_id: str, task_id: int, others: list[int],
              own: Trigger) -> tuple[dict[Trigger, list[int]], dict[int, str]]:
    """Clear the pending marks (after locking, before reading); group the tasks by the event that queued
    them (rules subscribe per event name), and keep each task's own event id for the audit."""
    pending = [keys.pending(portal_id, other) for other in others]
    pipe = rt.redis.pipeline(transaction=False)
    if pending:
        pipe.mget(pending)
    pipe.delete(keys.pending(portal_id, task_id), *pending)
    results = pipe.execute()
    marks = results[0] if pending else []
    groups: dict[Trigger, list[int]] = {own: [task_id]}
    event_ids: dict[int, str] = {task_id: own.event_id} if own.event_id else {}
    for other, mark in zip(others, marks, strict=True):
        event_id = mark.decode() if mark else None
        name = event_id.split(":", 1)[0] if event_id else own.event_name
        groups.setdefault(own if name == own.event_name else Trigger("event", name), []).append(other)
        if event_id:
            event_ids[other] = event_id
    return groups, event_ids


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
