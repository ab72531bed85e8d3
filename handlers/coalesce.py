"""Coalesce events per task and enqueue an evaluation only when none is waiting (SPEC section 3).

With ``TASKWARDEN_REDIS_MIN_REPLICAS`` set, a queued evaluation must also reach that many replicas before
intake answers: Redis replicates asynchronously, and an event acknowledged by a master that dies before its
replica has the write is gone (docs/failover.md). Intake asks with ``WAIT`` on the connection that wrote.
When the replicas do not acknowledge within ``REPLICA_WAIT_MS``, ``NotReplicated`` (a ``RedisError``) makes
intake keep the event in its spool as well and answer ``202 spooled``: an acknowledged event is on a replica
or on disk.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

import keys
from handlers.enqueue_script import queue_unless_pending
from handlers.script_call import ReplicaWait, replicas_acknowledging
from queueing import PENDING_TTL_SECONDS
from redis_connect import replicas_to_wait_for

REPLICA_WAIT_MS = 100
"""How long intake waits for replicas to acknowledge a queued event. A replica on the same network answers
within a millisecond or two; one that lags longer costs a spooled event (202), not a slow intake."""
REFUSALS_KEPT = 100_000
"""Events remembered as refused for want of a replica (a few MB); see ``_refused_before``."""

_refused: dict[tuple[str, str], bool] = {}
_refused_lock = threading.Lock()


class NotReplicated(RedisError):
    """The evaluation was queued, but too few replicas acknowledged it in time: keep the event on disk too."""


def coalesce(redis: Redis, queue: Queue, portal_id: str, task_id: int, *, event_name: str,
             event_id: str, rules_digest: str | None = None, max_waiting: int = 0) -> str:
    """``queued`` when this event starts an evaluation, ``duplicate`` when one is already waiting.

    The waiting evaluation reads the task's latest state when it runs, so the duplicate adds nothing.
    The pending mark and the job are written by one script in one round trip, both or neither, so a
    failure never leaves a mark without a job behind it (which would swallow events until it expired).
    Raises ``QueueFull`` when ``max_waiting`` tasks already wait (the caller keeps the event elsewhere), and
    ``NotReplicated`` when the client asks for replicas (``redis_connect``) and they did not acknowledge.
    """
    replicas = replicas_to_wait_for(redis)
    wait = ReplicaWait(replicas, REPLICA_WAIT_MS, wrote=_queued_answer) if replicas else None
    with replicas_acknowledging(wait) if wait is not None else nullcontext():
        queued = queue_unless_pending(redis, queue, portal_id, task_id, event_name=event_name, event_id=event_id,
                                      pending_key=keys.pending(portal_id, task_id), pending_ttl=PENDING_TTL_SECONDS,
                                      waiting_key=keys.waiting(portal_id), rules_digest=rules_digest,
                                      max_waiting=max_waiting)
    acknowledged = (wait.acknowledged or 0) if wait is not None else replicas
    if queued and acknowledged < replicas and not _refused_before((portal_id, event_id)):
        raise NotReplicated(f"{acknowledged} of {replicas} replicas acknowledged within {REPLICA_WAIT_MS} ms")
    return "queued" if queued else "duplicate"


def _queued_answer(answer: Any) -> bool:
    """The enqueue script answers 1 when it set the mark and queued the job: the only answer that wrote."""
    return bool(answer == 1)


def _refused_before(event: tuple[str, str]) -> bool:
    """Whether this event was already refused once for want of a replica, and is now back from the spool.

    The spool drains an event by coalescing it again. Refused a second time, its line would stay, its drain
    would stop there, and each attempt would queue one more evaluation for as long as no replica answers. So
    an event is refused once: intake's copy on disk is what covers it, and its second coming is accepted.
    """
    with _refused_lock:
        if _refused.pop(event, False):
            return True
        _refused[event] = True
        if len(_refused) > REFUSALS_KEPT:
            del _refused[next(iter(_refused))]
        return False
