"""Coalesce events per task and enqueue an evaluation only when none is waiting (SPEC section 3)."""

from __future__ import annotations

from redis import Redis
from rq import Queue

import keys
from handlers.enqueue_script import queue_unless_pending
from queueing import PENDING_TTL_SECONDS


def coalesce(redis: Redis, queue: Queue, portal_id: str, task_id: int, *, event_name: str,
             event_id: str, rules_digest: str | None = None, max_waiting: int = 0) -> str:
    """``queued`` when this event starts an evaluation, ``duplicate`` when one is already waiting.

    The waiting evaluation reads the task's latest state when it runs, so the duplicate adds nothing.
    The pending mark and the job are written by one script in one round trip, both or neither, so a
    failure never leaves a mark without a job behind it (which would swallow events until it expired).
    Raises ``QueueFull`` when ``max_waiting`` tasks already wait (the caller keeps the event elsewhere).
    """
    queued = queue_unless_pending(redis, queue, portal_id, task_id, event_name=event_name, event_id=event_id,
                                  pending_key=keys.pending(portal_id, task_id), pending_ttl=PENDING_TTL_SECONDS,
                                  waiting_key=keys.waiting(portal_id), rules_digest=rules_digest,
                                  max_waiting=max_waiting)
    return "queued" if queued else "duplicate"
