"""Per-task locks for many tasks at once (sweeps), compatible with the single-task ``redis.lock`` of jobs.

Both write ``SET key token NX PX`` and delete only when the token still matches, so a sweep and an
event-driven evaluation exclude each other on the same key. Taken in one script call, however many: a
pass locks thousands of tasks, and packing a pipeline command per task cost more than the locking.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from redis import Redis
from redis.exceptions import LockError, RedisError

import keys
from redis_scripts import script

log = structlog.get_logger(__name__)

# KEYS: lock keys; ARGV[1]: token, ARGV[2]: TTL ms. Returns 1 per key taken, 0 per key held by another.
_TAKE = """
local taken = {}
for i, key in ipairs(KEYS) do
  taken[i] = redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
end
return taken
"""


# KEYS: lock keys; ARGV[1]: token. Deletes each key still holding our token.
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); released = released + 1 end
end
return released
"""


# KEYS: lock keys; ARGV[1]: token, ARGV[2]: TTL ms. Renews each key still holding our token.
_RENEW = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 1
"""


@contextmanager
def task_locks(redis: Redis, portal_id: str, task_ids: list[int], ttl_seconds: int) -> Iterator[list[int]]:
    """Lock what can be locked now; yields the ids we hold (busy tasks are left to their evaluation).

    The TTL is short and a keeper thread renews it while we hold the locks, so a killed sweep frees
    its tasks within ``ttl_seconds`` instead of blocking their events for the sweep's whole timeout.
    """
    token = uuid.uuid4().hex.encode()
    lock_keys = [keys.task_lock(portal_id, task_id) for task_id in task_ids]
    taken = script(redis, _TAKE)(keys=lock_keys, args=[token, ttl_seconds * 1000]) if lock_keys else []
    held = [task_id for task_id, ok in zip(task_ids, taken, strict=True) if ok]
    mine = [key for key, ok in zip(lock_keys, taken, strict=True) if ok]
    stop = threading.Event()
    keeper = threading.Thread(target=_renew_until, args=(redis, mine, token, ttl_seconds, stop), daemon=True)
    if mine:
        keeper.start()
    try:
        yield held
    finally:
        stop.set()
        if mine:
            keeper.join(timeout=5)
            script(redis, _RELEASE)(keys=mine, args=[token])


def _renew_until(redis: Redis, lock_keys: list[str], token: bytes, ttl_seconds: int, stop: threading.Event) -> None:
    while not stop.wait(ttl_seconds / 3):
        try:
            script(redis, _RENEW)(keys=lock_keys, args=[token, ttl_seconds * 1000])
        except RedisError:
            log.warning("lock.renew_failed", locks=len(lock_keys))


class KeptLock:
    """A Redis lock with a short TTL that a background thread keeps extending while we hold it.

    The TTL stays short so that a worker killed with SIGKILL releases the task within seconds, not
    after the longest possible evaluation; while the holder lives, the keeper renews it every ttl/3.
    """

    def __init__(self, redis: Redis, key: str, ttl_seconds: int) -> None:
        # not thread-local: the keeper thread extends with the token the acquiring thread got
        self._lock = redis.lock(key, timeout=ttl_seconds, thread_local=False)
        self._ttl = ttl_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, blocking_timeout: float = 0) -> bool:
        if not self._lock.acquire(blocking=blocking_timeout > 0, blocking_timeout=blocking_timeout or None):
            return False
        self._thread = threading.Thread(target=self._keep, name="lock-keeper", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._lock.release()
        except LockError:
            log.warning("lock.expired_before_release", key=self._lock.name)

    def _keep(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self._lock.extend(self._ttl, replace_ttl=True)
            except (LockError, RedisError):
                log.warning("lock.lost", key=self._lock.name)
                return
            except Exception:  # a bug here would otherwise end the keeper silently and let the lock lapse
                log.exception("lock.keeper_failed", key=self._lock.name)
                return


RUNNING_TTL_SECONDS = 600
"""Safety expiry of a running count whose evaluation was killed before counting itself out."""

# KEYS: running counters; ARGV[1]: TTL s. Counts each in, returns the counts.
_ENTER = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
return counts
"""
_LEAVE = "for _, key in ipairs(KEYS) do redis.call('DECR', key) end return 1"


@contextmanager
def concurrency_guard(redis: Redis, portal_id: str, task_ids: list[int]) -> Iterator[None]:
    """Count evaluations of each task running at once; more than one is a lock violation, recorded.

    The locks should make this impossible; the counter is the evidence tests and metrics read.
    """
    running_keys = [keys.running(portal_id, task_id) for task_id in task_ids]
    counts = script(redis, _ENTER)(keys=running_keys, args=[RUNNING_TTL_SECONDS]) if running_keys else []
    for task_id, running in zip(task_ids, counts, strict=True):
        if running > 1:
            redis.hincrby(keys.lock_violations(portal_id), str(task_id), 1)
            log.error("evaluation.lock_violation", task_id=task_id, running=running)
    try:
        yield
    finally:
        if running_keys:
            script(redis, _LEAVE)(keys=running_keys)
