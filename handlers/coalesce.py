"""Coalesce events per task and enqueue an evaluation only when none is waiting (SPEC section 3)."""

from __future__ import annotations

from redis import Redis
from rq import Queue

import keys
from workers.jobs import PENDING_TTL_SECONDS, enqueue_evaluation


def coalesce(redis: Redis, queue: Queue, portal_id: str, task_id: int, *, event_name: str,
             event_id: str) -> str:
    """``queued`` when this event starts an evaluation, ``duplicate`` when one is already waiting.

    The waiting evaluation reads the task's latest state when it runs, so the duplicate adds nothing.
    """
    if not redis.set(keys.pending(portal_id, task_id), event_id, nx=True, ex=PENDING_TTL_SECONDS):
        return "duplicate"
    try:
        enqueue_evaluation(queue, portal_id, task_id, cause="event", event_name=event_name, event_id=event_id)
    except Exception:
        redis.delete(keys.pending(portal_id, task_id))  # no job waits, so the next event must enqueue
        raise
    return "queued"
