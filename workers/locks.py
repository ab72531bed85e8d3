"""Per-task locks for many tasks at once (sweeps), compatible with the single-task ``redis.lock`` of jobs.

Both write ``SET key token NX PX`` and delete only when the token still matches, so a sweep and an
event-driven evaluation exclude each other on the same key. Taken in one pipeline round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

import keys

# KEYS: lock keys; ARGV[1]: token. Deletes each key still holding our token.
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); released = released + 1 end
end
return released
"""


@contextmanager
def task_locks(redis: Redis, portal_id: str, task_ids: list[int], timeout_seconds: int) -> Iterator[list[int]]:
    """Lock what can be locked now; yields the ids we hold (busy tasks are left to their evaluation)."""
    token = uuid.uuid4().hex.encode()
    lock_keys = [keys.task_lock(portal_id, task_id) for task_id in task_ids]
    pipe = redis.pipeline(transaction=False)
    for key in lock_keys:
        pipe.set(key, token, nx=True, px=timeout_seconds * 1000)
    taken = pipe.execute()
    held = [task_id for task_id, ok in zip(task_ids, taken, strict=True) if ok]
    try:
        yield held
    finally:
        mine = [key for key, ok in zip(lock_keys, taken, strict=True) if ok]
        if mine:
            redis.eval(_RELEASE, len(mine), *mine, token)
