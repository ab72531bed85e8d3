"""The jobs both sides know: queue names, the evaluation and sweep jobs' definitions, and enqueueing them.

Intake queues evaluations, workers requeue them and the scheduler queues sweeps; the job functions
themselves live in ``workers.jobs`` and are named here by their import path, as RQ stores them, so that
intake never imports the workers.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from uuid import uuid4

from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job

import keys

EVALUATION_QUEUE = "taskwarden-evaluations"
"""RQ queue for per-task evaluations (fed by intake)."""
SWEEP_QUEUE = "taskwarden-sweeps"
"""RQ queue for sweeps, kept apart so a long sweep never delays event-driven work."""
QUEUES = (EVALUATION_QUEUE, SWEEP_QUEUE)

EVALUATE_TASK = "workers.jobs.evaluate_task"
RECHECK_TASKS = "workers.jobs.recheck_tasks"
RUN_SWEEP = "workers.jobs.run_sweep_job"

EVALUATION_TIMEOUT_SECONDS = 120
"""Longest one evaluation may run before RQ stops it (budget waits included)."""
PENDING_TTL_SECONDS = 900
"""Safety expiry of the pending mark, should its job vanish (e.g. Redis data lost)."""
RETRY_INTERVALS_SECONDS = (0, 30, 90)
"""Delays before RQ re-runs a failed evaluation (jittered per job). The first is 0 on purpose: RQ then
requeues at once instead of scheduling, so a job abandoned by a killed worker does not also wait for a
scheduler (whose lock a killed worker may hold for a minute) before it runs again."""
FAILURE_TTL_SECONDS = 7 * 86400
RESULT_TTL_SECONDS = 3600
SWEEP_JOB_TIMEOUT_SECONDS = 3600


def evaluation_spec(portal_id: str, task_id: int, cause: str, event_name: str | None, event_id: str | None,
                    rules_digest: str | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An evaluation job's kwargs, meta (log context) and description; intake's script builds the same job.

    ``rules_digest`` names the rules of the process that queued the job: a worker running other rules says
    so loudly rather than acting on them silently.
    """
    kwargs: dict[str, Any] = {"portal_id": portal_id, "task_id": task_id, "cause": cause, "event_name": event_name,
                              "event_id": event_id}
    if rules_digest is not None:
        kwargs["rules_digest"] = rules_digest
    meta = {"log_ctx": {"task_id": task_id, "event_id": event_id, "portal": portal_id}}
    return kwargs, meta, f"evaluate task {task_id} ({cause})"


def jittered_retry_intervals() -> list[int]:
    """``RETRY_INTERVALS_SECONDS`` spread by +-20%, so jobs that failed together do not retry together."""
    return [round(seconds * random.uniform(0.8, 1.2)) for seconds in RETRY_INTERVALS_SECONDS]


def evaluation_retry() -> Retry:
    return Retry(max=len(RETRY_INTERVALS_SECONDS), interval=jittered_retry_intervals())


def _job_options(kwargs: dict[str, Any], meta: dict[str, Any], description: str) -> dict[str, Any]:
    """An evaluation job's options for RQ: a fresh id, our timeout, TTLs and retries."""
    return {"job_id": str(uuid4()), "kwargs": kwargs, "meta": meta, "description": description,
            "job_timeout": EVALUATION_TIMEOUT_SECONDS, "result_ttl": RESULT_TTL_SECONDS,
            "failure_ttl": FAILURE_TTL_SECONDS, "retry": evaluation_retry()}


def enqueue_evaluation(queue: Queue, portal_id: str, task_id: int, *, cause: str = "event",
                       event_name: str | None = None, event_id: str | None = None, rules_digest: str | None = None,
                       delay_seconds: float = 0, pipeline: Any = None, list_waiting: bool = True) -> Job:
    """Queue one evaluation of a task with our retry and TTL policy, and list the task as waiting.

    ``list_waiting=False``: the task is waiting already and stays listed as it is (a job comes back for it
    later); should a pass take it along meanwhile, the job finds it gone and ends.
    """
    options = _job_options(*evaluation_spec(portal_id, task_id, cause, event_name, event_id, rules_digest))
    job_id = options["job_id"]
    if pipeline is not None:  # RQ watches keys on the pipeline first; ours comes after, in the same MULTI
        if delay_seconds:
            job = queue.enqueue_in(dt.timedelta(seconds=delay_seconds), EVALUATE_TASK, pipeline=pipeline, **options)
        else:
            job = queue.enqueue(EVALUATE_TASK, pipeline=pipeline, **options)
        if list_waiting:
            pipeline.hset(keys.waiting(portal_id), str(task_id), job_id)
        return job
    if list_waiting:
        queue.connection.hset(keys.waiting(portal_id), str(task_id), job_id)  # before the job can be picked up
    if delay_seconds:
        return queue.enqueue_in(dt.timedelta(seconds=delay_seconds), EVALUATE_TASK, **options)
    return queue.enqueue(EVALUATE_TASK, **options)


def queue_recheck(queue: Queue, portal_id: str, task_ids: list[int], *, rules_digest: str | None,
                  delay_seconds: float) -> Job:
    """Before a pass writes these tasks: mark them pending and queue one job to read them all again later.

    The portal answers each of our task writes with an ``ONTASKUPDATE`` some seconds later; finding its task
    pending, that event adds nothing, so the events of a whole pass's writes come down to one re-read instead
    of an evaluation each (``TASKWARDEN_RECHECK_SECONDS``). The re-read stands in for those events: whatever
    else changed a task before it, it sees; an event arriving after it is evaluated as usual. A task already
    pending keeps its mark (its own job is queued) and is read by both. Job and marks go in one transaction:
    a crash leaves neither, or both.
    """
    with queue.connection.pipeline() as pipe:
        job = enqueue_recheck(queue, portal_id, task_ids, rules_digest=rules_digest, delay_seconds=delay_seconds,
                              pipeline=pipe)
        for task_id in task_ids:
            pipe.set(keys.pending(portal_id, task_id), recheck_event_id(task_id), nx=True, ex=PENDING_TTL_SECONDS)
        pipe.execute()
    return job


def enqueue_recheck(queue: Queue, portal_id: str, task_ids: list[int], *, rules_digest: str | None,
                    delay_seconds: float, pipeline: Any = None) -> Job:
    """The recheck job alone (``queue_recheck``; a recheck stepping back queues itself again with this). Its
    tasks are not listed as waiting: the job brings them with it, and no other pass claims them early."""
    kwargs = {"portal_id": portal_id, "task_ids": task_ids, "rules_digest": rules_digest}
    meta = {"log_ctx": {"task_id": task_ids[0], "tasks": len(task_ids), "portal": portal_id}}
    options = _job_options(kwargs, meta, f"recheck {len(task_ids)} tasks after our writes")
    return queue.enqueue_in(dt.timedelta(seconds=delay_seconds), RECHECK_TASKS, pipeline=pipeline, **options)


RECHECK_EVENT = "ONTASKUPDATE"
"""A recheck stands in for the events our writes raise, so the rules run as they would for those."""


def recheck_event_id(task_id: int) -> str:
    """The pending mark and audit event id of a recheck (its first part names the event, as intake's do)."""
    return f"{RECHECK_EVENT}:{task_id}:recheck"


def enqueue_sweep(queue: Queue, portal_id: str, kind: str, *, job_id: str | None = None) -> Job:
    """Queue one sweep; ``job_id`` (one per schedule slot) makes a repeated enqueue of a slot fail."""
    return queue.enqueue(RUN_SWEEP, kwargs={"portal_id": portal_id, "kind": kind}, job_id=job_id,
                         unique=job_id is not None, job_timeout=SWEEP_JOB_TIMEOUT_SECONDS,
                         result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS,
                         meta={"log_ctx": {"sweep": kind, "portal": portal_id}}, description=f"sweep {kind}")


def coalesce_evaluation(queue: Queue, portal_id: str, task_id: int, *, event_name: str, event_id: str,
                        rules_digest: str | None = None) -> str:
    """Queue an evaluation unless one already waits (``queued`` / ``duplicate``), as intake's script does for
    pushed events: the pending mark and the job go in one transaction, both or neither. Workers use this for
    events they fetch themselves (the offline queue); intake keeps its one-round-trip script."""
    redis = queue.connection
    pending = keys.pending(portal_id, task_id)
    with redis.pipeline() as pipe:
        try:
            pipe.watch(pending)
            if pipe.exists(pending):
                return "duplicate"
            pipe.multi()
            pipe.set(pending, event_id, ex=PENDING_TTL_SECONDS)
            enqueue_evaluation(queue, portal_id, task_id, event_name=event_name, event_id=event_id,
                               rules_digest=rules_digest, pipeline=pipe)
            pipe.execute()
        except WatchError:  # an event for the task was queued in between
            return "duplicate"
    return "queued"


OFFLINE_DRAIN = "workers.offline.drain_offline_events"


def enqueue_offline_drain(queue: Queue, portal_id: str, *, job_id: str | None = None) -> Job | None:
    """Queue one drain of the portal's offline event queue; ``job_id`` (one per schedule slot) makes a repeated
    enqueue of a slot a no-op. Two drains at once are safe: the portal hands parallel reads disjoint rows."""
    try:
        return queue.enqueue(OFFLINE_DRAIN, kwargs={"portal_id": portal_id}, job_id=job_id, unique=job_id is not None,
                             job_timeout=EVALUATION_TIMEOUT_SECONDS, result_ttl=RESULT_TTL_SECONDS,
                             failure_ttl=FAILURE_TTL_SECONDS, meta={"log_ctx": {"portal": portal_id}},
                             description=f"drain offline events of {portal_id}")
    except DuplicateJobError:
        return None
