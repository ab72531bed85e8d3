"""Shared evaluation passes: one job evaluates its task together with other waiting tasks.

Intake lists every queued task in the portal's waiting hash (task id -> its job's id). The job of a pass
claims up to ``TASKWARDEN_PASS_SIZE`` - 1 others from it and takes their jobs off the queue (they would
only find their task gone), locks the free ones, clears their pending marks, and evaluates them all at
once: reads of 50 tasks per command and writes of 50 per batch, shared by the whole pass. The claimed
tasks are noted under the job's id (``inflight``) until the pass ends, so that a job killed mid-pass and
rerun by RQ takes the same tasks up again.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq.job import JobStatus

import keys
from bitrix.errors import OperationTimeLimit
from queueing import enqueue_evaluation
from redis_scripts import script
from runtime import Runtime
from workers.evaluation import Trigger, evaluate_tasks, needs_of, paused_read
from workers.locks import KeptLock, concurrency_guard, task_locks

log = structlog.get_logger(__name__)

BUSY_RETRY_SECONDS = 5
"""Shortest delay before a task comes back: after a pause, or while another evaluation of it runs."""
INFLIGHT_TTL_SECONDS = 86400
"""How long the tasks of a pass stay noted for a rerun of its job (after a SIGKILL)."""
CLAIMED_LOCK_TTL_SECONDS = 15
"""TTL of the claimed tasks' locks, renewed while the pass runs."""
HANDED_OVER_TTL_SECONDS = 86400
"""Safety expiry of the mark that a pass owes a follow-up (its holder may be killed and its job never rerun)."""
HANDED_OVER = b"handed-over"
"""The mark's value as a job sets it; ``follow_up`` sets its job's id instead."""
COMING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}
"""RQ statuses of a job that will still run a pass (``follow_up_if_orphaned``)."""


def take_own_task(rt: Runtime, portal_id: str, task_id: int, inflight: str) -> bool:
    """Move the job's own task from the waiting hash to its ``inflight`` set, in one step; False when the
    task was not waiting (an earlier pass took it along).

    One step, because a job killed between the two would leave a rerun that finds its task neither
    waiting nor noted, and ends as "coalesced" without evaluating it.
    """
    return bool(script(rt.redis, _TAKE_OWN)(keys=[keys.waiting(portal_id), inflight],
                                            args=[task_id, INFLIGHT_TTL_SECONDS]))


def note_tasks(rt: Runtime, inflight: str, task_ids: list[int]) -> None:
    """Note tasks under a job's ``inflight`` set as if its pass had claimed them (a recheck brings its own)."""
    with rt.redis.pipeline() as pipe:
        pipe.sadd(inflight, *task_ids)
        pipe.expire(inflight, INFLIGHT_TTL_SECONDS)
        pipe.execute()


def requeue_noted(rt: Runtime, portal_id: str, task_id: int, inflight: str, trigger: Trigger,
                  delay_seconds: float) -> None:
    """Give the tasks noted under a job that steps back before its pass (all but its own) jobs of their own."""
    _requeue(rt, portal_id, _noted(rt, task_id, inflight), trigger, delay_seconds=delay_seconds)


def shared_pass(rt: Runtime, portal_id: str, task_id: int, inflight: str, trigger: Trigger, *,
                noted: bool) -> tuple[list[Any], int]:
    """Claim other waiting tasks, lock the free ones, evaluate them all with ours; returns decisions, count.

    The claimed tasks are noted under this job's id (``inflight``) before anything else happens: if the
    worker is killed, RQ runs the same job again and it takes the same tasks up (``noted``), since their
    own jobs may meanwhile have ended as "coalesced". A job that came with its tasks noted (a rerun, or a
    recheck) claims no others.
    """
    paused = paused_read(rt, needs_of(rt.rules))
    # While a read method is paused, a new pass claims nobody (the others wait where they are); a job with
    # noted tasks gives them jobs for after the pause.
    claimed = _noted(rt, task_id, inflight) if noted else [] if paused else _claim(rt, portal_id, inflight)
    requeued: list[int] = []
    try:
        if paused is not None:
            raise paused
        with task_locks(rt.redis, portal_id, claimed, CLAIMED_LOCK_TTL_SECONDS) as held:
            busy = sorted(set(claimed) - set(held))
            if busy:  # being evaluated elsewhere right now: queue them again for after that
                _requeue(rt, portal_id, busy, trigger)
                requeued = busy
            triggers, event_ids = _triggers(rt, portal_id, task_id, held, trigger)
            with concurrency_guard(rt.redis, portal_id, [task_id, *held]):
                decisions = [d for each, ids in triggers.items()
                             for d in evaluate_tasks(rt, ids, each, event_ids=event_ids)]
    except BaseException as error:  # the others get jobs of their own again (after a pause, if that was it);
        # ours is retried by RQ or comes back after the pause, and the caller drops the note once it is listed
        _requeue(rt, portal_id, sorted(set(claimed) - set(requeued)), trigger, delay_seconds=pause_delay(error))
        raise
    rt.redis.delete(inflight)
    return decisions, 1 + len(held)


def _noted(rt: Runtime, task_id: int, inflight: str) -> list[int]:
    """The other tasks a killed earlier run of this job had claimed."""
    return sorted({int(raw) for raw in rt.redis.smembers(inflight)} - {task_id})


def _claim(rt: Runtime, portal_id: str, inflight: str) -> list[int]:
    """Up to a pass's worth of other waiting tasks, noted under ``inflight``; their own queued jobs are
    taken off the queue (they would only find their task gone)."""
    fields, job_ids = script(rt.redis, _CLAIM)(keys=[keys.waiting(portal_id), inflight],
                                    args=[rt.settings.taskwarden_pass_size - 1, INFLIGHT_TTL_SECONDS])
    if not fields:
        return []
    claimed = [int(raw) for raw in fields]
    try:  # only spares workers a fork each: a job left queued finds its task taken and ends as coalesced
        _dequeue(rt, job_ids)
    except RedisError:
        log.warning("pass.dequeue_failed", tasks=len(claimed))
    return claimed


def _dequeue(rt: Runtime, job_ids: list[Any]) -> None:
    """Take these jobs off the queue and delete them (a scheduled one stays, and finds its task gone)."""
    queue = rt.queue()
    gone = script(rt.redis, _DEQUEUE)(keys=[queue.key], args=job_ids)
    if gone:
        rt.redis.delete(*(queue.job_class.key_for(job_id.decode()) for job_id in gone))


def hand_over(rt: Runtime, portal_id: str, portal_pass: KeptLock) -> bool:
    """A job met a running pass of its portal (``portal_pass`` is taken): leave the task to it. False when that
    pass ended meanwhile and the lock is now the job's own: it runs its pass itself.

    The mark for a follow-up goes first, then the lock is tried once more: the pass asks for the mark after
    releasing its lock, so either it sees the mark, or it released before the second try, which then succeeds.
    The portal's other queued jobs come off the queue, as each would only meet the same pass (a fork apiece).
    """
    rt.redis.set(keys.handed_over(portal_id), HANDED_OVER, ex=HANDED_OVER_TTL_SECONDS)
    if portal_pass.acquire():
        return False
    job_ids = rt.redis.hvals(keys.waiting(portal_id))
    if job_ids:
        _dequeue(rt, job_ids)
    return True


def follow_up(rt: Runtime, portal_id: str) -> bool:
    """After a pass released its portal's lock: when a job handed its task over meanwhile, queue one job now to
    take every waiting task along (those jobs are gone from the queue).

    The follow-up's own pass takes at most ``TASKWARDEN_PASS_SIZE`` of them, so the mark goes with its job: that
    pass follows up in turn, until nothing waits. True when it queued a job.
    """
    if not rt.redis.getdel(keys.handed_over(portal_id)):
        return False
    raw: Any = rt.redis.hrandfield(keys.waiting(portal_id))
    if raw is None:
        return False
    task_id = int(raw)
    mark: Any = rt.redis.get(keys.pending(portal_id, task_id))
    event_id = mark.decode() if mark else None
    with rt.redis.pipeline() as pipe:  # RQ's commands first (it WATCHes), the mark in the same MULTI
        job = enqueue_evaluation(rt.queue(), portal_id, task_id, rules_digest=rt.rules.digest, list_waiting=False,
                                 event_name=event_id.split(":", 1)[0] if event_id else None, event_id=event_id,
                                 pipeline=pipe)
        pipe.set(keys.handed_over(portal_id), job.id, ex=HANDED_OVER_TTL_SECONDS)
        pipe.execute()
    return True


def follow_up_if_orphaned(rt: Runtime, portal_id: str) -> bool:
    """The scheduler's safety net, each tick: a follow-up is owed but no pass of the portal runs and no follow-up
    job is on its way, so none will come (the pass's job failed for good, or a failover lost the release of its
    lock: the new master holds a lock nobody runs under until it expires). Queue it now; True when it did.

    Nothing is queued while a job that will run a pass is on its way: the follow-up job whose id ``follow_up``
    left in the mark, or a job of a waiting task (one that stepped back for the portal's budget). A job that has
    just handed over and is trying the lock once more may get a twin: a spare job that finds its task taken.
    """
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.handed_over(portal_id))
        pipe.exists(keys.pass_lock(portal_id))
        owed, running = pipe.execute()
    if not owed or running:
        return False
    candidates = [owed] if owed != HANDED_OVER else []
    candidates += rt.redis.hvals(keys.waiting(portal_id))  # a job that stepped back is listed there anew
    queue = rt.queue()
    jobs = queue.job_class.fetch_many([job_id.decode() for job_id in candidates], connection=rt.redis,
                                      serializer=queue.serializer)
    if any(job is not None and job.get_status(refresh=False) in COMING for job in jobs):
        return False  # that job runs a pass, which follows up
    return follow_up(rt, portal_id)


def _requeue(rt: Runtime, portal_id: str, task_ids: list[int], trigger: Trigger, delay_seconds: float = 0) -> None:
    """Give claimed tasks fresh jobs of their own (their queued jobs were taken off the queue)."""
    if not task_ids:
        return
    with rt.redis.pipeline() as pipe:
        for task_id in task_ids:
            enqueue_evaluation(rt.queue(), portal_id, task_id, cause=trigger.cause, event_name=trigger.event_name,
                               delay_seconds=delay_seconds, pipeline=pipe)
        pipe.execute()


def pause_delay(error: BaseException) -> float:
    """Seconds until a paused method opens again (at least ``BUSY_RETRY_SECONDS``); 0 for other errors."""
    if not isinstance(error, OperationTimeLimit):
        return 0
    return max(BUSY_RETRY_SECONDS, (error.reset_at or 0) - time.time())


# KEYS[1] the waiting hash, KEYS[2] the job's inflight set; ARGV[1] how many, ARGV[2] the set's TTL.
# Moves up to that many waiting tasks, at random, from the hash to the set in one step (a kill in between
# would lose them: their own jobs would find them gone, the rerun would not know them), and returns
# {task ids, their job ids}.
_CLAIM = """
local fields = redis.call('HRANDFIELD', KEYS[1], ARGV[1])
if #fields == 0 then return {{}, {}} end
local job_ids = redis.call('HMGET', KEYS[1], unpack(fields))
redis.call('HDEL', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {fields, job_ids}
"""

# KEYS[1] the queue's list; ARGV the job ids to take off it. Returns those that were on it. One pass over
# the list: an LREM per job scans it from the head each time, which for 2,500 claimed jobs in a queue of
# 10,000 kept Redis busy for ~0.4 s, stalling every other client.
_DEQUEUE = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local kept, gone = {}, {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if wanted[id] then gone[#gone + 1] = id else kept[#kept + 1] = id end
end
if #gone > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #kept, 1000 do redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 999, #kept))) end
end
return gone
"""

# KEYS[1] the waiting hash, KEYS[2] the job's inflight set; ARGV[1] the task id, ARGV[2] the set's TTL.
_TAKE_OWN = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def _triggers(rt: Runtime, portal_id: str, task_id: int, others: list[int],
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
