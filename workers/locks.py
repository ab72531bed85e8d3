"""Locks that keep a task (or a sweep) to one evaluation at a time, and the evidence that they do.

- ``KeptLock``: one lock (a job's own task, a sweep's kind), redis-py's ``Lock``.
- ``task_locks``: many task locks taken in one script call (a pass's other tasks, a sweep's tasks). Both
  write ``SET key token NX PX`` and delete only while the token matches, so they exclude each other.
- ``ensure_held``: the write step's check that the locks of the tasks it writes are still ours.
- ``concurrency_guard``: marks the evaluations running on each task, and records any second one.

Every lock has a short TTL that a keeper thread renews while its holder lives (a killed holder frees it
within the TTL), retrying through a Redis blip. The locks of this context (thread, job) are remembered with
their tokens, so that ``ensure_held`` can stop a holder that lost one anyway from writing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

import structlog
from redis import Redis
from redis.exceptions import LockError, RedisError

import keys
from redis_scripts import script

log = structlog.get_logger(__name__)

GUARD_TTL_SECONDS = 8.0
"""How long an evaluation's running mark lives unless renewed (every third of it). Under two thirds of a task
lock's 15 s TTL: that lock, renewed every 5 s, outlives a killed holder by at least 10 s, so the holder's mark
has lapsed before anyone can take the lock, and a rerun is not counted as a second evaluation."""

_held: ContextVar[Mapping[str, tuple[str, int]]] = ContextVar("taskwarden_held_locks",
                                                                  default=MappingProxyType({}))
"""The locks this context holds: key -> (token, TTL in ms)."""


class LockLost(Exception):
    """A task about to be written is no longer locked by us: another evaluation may hold it now. Raised before
    anything is written: the job fails and RQ runs it again as a whole (a sweep: its next slot)."""

    def __init__(self, task_ids: list[int]) -> None:
        super().__init__(f"the lock of task(s) {', '.join(map(str, task_ids))} is no longer ours")
        self.task_ids = task_ids


class _Keeper:
    """Calls ``renew`` every ttl/3 on a thread of its own while the holder lives.

    A Redis error does not end it: it tries again every tenth of the TTL (at most every second) until the
    TTL has run out since its last renewal, so a blip shorter than the TTL loses nothing. ``renew``
    answering False (not ours any more) or the TTL running out ends it; ``ensure_held`` then keeps the
    holder from writing.
    """

    def __init__(self, renew: Callable[[], bool], ttl_seconds: float, what: str) -> None:
        self._renew, self._ttl, self._what = renew, ttl_seconds, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        renewed = time.monotonic()
        delay, failing = self._ttl / 3, False
        while not self._stop.wait(delay):
            attempt = time.monotonic()
            try:
                ours = self._renew()
            except RedisError as error:
                left = renewed + self._ttl - time.monotonic()
                if left <= 0:
                    log.error("lock.lost", what=self._what, error=str(error))
                    return
                if not failing:
                    log.warning("lock.renew_failed", what=self._what, error=str(error), seconds_left=round(left, 1))
                delay, failing = min(left, self._ttl / 10, 1.0), True
                continue
            except Exception:  # a bug here would otherwise end the keeper silently and let the lock lapse
                log.exception("lock.keeper_failed", what=self._what)
                return
            if not ours:
                log.error("lock.lost", what=self._what)
                return
            if failing:
                log.info("lock.kept", what=self._what)
            renewed, delay, failing = attempt, self._ttl / 3, False


def _remember(locks: Mapping[str, tuple[str, int]]) -> None:
    _held.set(MappingProxyType({**_held.get(), **locks}))


def _forget(lock_keys: list[str]) -> None:
    gone = set(lock_keys)
    _held.set(MappingProxyType({key: value for key, value in _held.get().items() if key not in gone}))


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

# KEYS: lock keys; ARGV[1]: token, ARGV[2]: TTL ms. Renews each key still holding our token; returns how many.
_RENEW = """
local renewed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]); renewed = renewed + 1 end
end
return renewed
"""

# KEYS: task lock keys; ARGV[i]: our token for KEYS[i] ('' when this context took no lock on it),
# ARGV[#KEYS + i]: its TTL ms. Renews the keys that hold our token; returns the (1-based) positions of the
# others: taken by another holder, or lapsed. A key we never locked counts only if someone else holds it.
_CONFIRM = """
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  local ours = ARGV[i]
  if ours ~= '' and holder == ours then
    redis.call('PEXPIRE', key, ARGV[#KEYS + i])
  elseif ours ~= '' or holder then
    lost[#lost + 1] = i
  end
end
return lost
"""


@contextmanager
def task_locks(redis: Redis, portal_id: str, task_ids: list[int], ttl_seconds: int) -> Iterator[list[int]]:
    """Lock what can be locked now; yields the ids we hold (busy tasks are left to their evaluation).

    The TTL is short and a keeper thread renews it while we hold the locks, so a killed sweep frees
    its tasks within ``ttl_seconds`` instead of blocking their events for the sweep's whole timeout.
    """
    token, ttl_ms = uuid.uuid4().hex, ttl_seconds * 1000
    lock_keys = [keys.task_lock(portal_id, task_id) for task_id in task_ids]
    taken = script(redis, _TAKE)(keys=lock_keys, args=[token, ttl_ms]) if lock_keys else []
    held = [task_id for task_id, ok in zip(task_ids, taken, strict=True) if ok]
    mine = [key for key, ok in zip(lock_keys, taken, strict=True) if ok]
    if not mine:
        yield held
        return
    keeper = _Keeper(lambda: bool(script(redis, _RENEW)(keys=mine, args=[token, ttl_ms])), ttl_seconds,
                     what=f"{len(mine)} task lock(s)")
    _remember({key: (token, ttl_ms) for key in mine})
    keeper.start()
    try:
        yield held
    finally:
        keeper.stop()
        _forget(mine)
        script(redis, _RELEASE)(keys=mine, args=[token])


class KeptLock:
    """A Redis lock with a short TTL that a background thread keeps extending while we hold it.

    The TTL stays short so that a worker killed with SIGKILL releases the task within seconds, not
    after the longest possible evaluation; while the holder lives, the keeper renews it every ttl/3.
    """

    def __init__(self, redis: Redis, key: str, ttl_seconds: int, owner: str | None = None) -> None:
        # not thread-local: the keeper thread extends with the token the acquiring thread got
        self._lock = redis.lock(key, timeout=ttl_seconds, thread_local=False)
        self._ttl = ttl_seconds
        self._token = owner or uuid.uuid4().hex
        self._owner = owner
        self._keeper = _Keeper(self._extend, ttl_seconds, what=key)

    def acquire(self, blocking_timeout: float = 0) -> bool:
        """Take the lock, waiting up to ``blocking_timeout`` seconds; with an ``owner`` (a job's id), also a lock
        that owner still holds (its earlier run was killed, and RQ runs the job again)."""
        if not self._lock.acquire(blocking=blocking_timeout > 0, blocking_timeout=blocking_timeout or None,
                                  token=self._token) and not (self._owner and self._take_back()):
            return False
        _remember({self._lock.name: (self._token, self._ttl * 1000)})
        self._keeper.start()
        return True

    def release(self) -> None:
        self._keeper.stop()
        _forget([self._lock.name])
        try:
            self._lock.release()
        except LockError:
            log.warning("lock.expired_before_release", key=self._lock.name)

    def _take_back(self) -> bool:
        self._lock.local.token = self._token.encode()
        try:
            self._lock.reacquire()  # only if the stored token is ours
        except LockError:
            self._lock.local.token = None
            return False
        return True

    def _extend(self) -> bool:
        try:
            self._lock.extend(self._ttl, replace_ttl=True)
        except LockError:  # not ours any more (a RedisError too, but not one to retry)
            return False
        return True


def ensure_held(redis: Redis, portal_id: str, task_ids: list[int]) -> None:
    """Right before writing: check that the lock of each task is ours, renewing it for another TTL. A task
    whose lock this context never took (an evaluation run without locks) passes while nobody else holds it.

    Raises:
        LockLost: a lock was taken by another holder or has lapsed; nothing must be written.
    """
    held = _held.get()
    lock_keys = [keys.task_lock(portal_id, task_id) for task_id in task_ids]
    ours = [held.get(key, ("", 0)) for key in lock_keys]
    lost = script(redis, _CONFIRM)(keys=lock_keys, args=[*(token for token, _ in ours), *(ttl for _, ttl in ours)])
    if lost:
        lost_ids = [task_ids[position - 1] for position in lost]
        log.error("evaluation.lock_lost", task_ids=lost_ids)
        raise LockLost(lost_ids)


# KEYS: running sets; ARGV[1]: our mark, ARGV[2]: TTL ms. Drops lapsed marks (Redis's clock), adds ours, keeps each
# set until its last mark lapses; returns how many marks each holds. An older version's counter is replaced.
_ENTER = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local counts = {}
for i, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok ~= 'zset' then redis.call('DEL', key) end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, now + ARGV[2], ARGV[1])
  redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  counts[i] = redis.call('ZCARD', key)
end
return counts
"""

# KEYS: running sets; ARGV[1]: our mark, ARGV[2]: TTL ms. Renews our mark (adding it again if it lapsed).
_MARK = """
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ARGV[2], ARGV[1])
  redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
end
return 1
"""

# KEYS: running sets; ARGV[1]: our mark. Removes it (a set left empty is deleted by Redis).
_LEAVE = """
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'zset' then redis.call('ZREM', key, ARGV[1]) end
end
return 1
"""


@contextmanager
def concurrency_guard(redis: Redis, portal_id: str, task_ids: list[int],
                      ttl_seconds: float = GUARD_TTL_SECONDS) -> Iterator[None]:
    """Mark this evaluation as running on each task; a task that already has a live mark is a lock
    violation, recorded in ``lock_violations``.

    The locks should make this impossible; the marks are the evidence tests and metrics read. A mark lives
    ``ttl_seconds`` and is renewed while the evaluation runs: a killed evaluation's marks lapse with it,
    so its rerun (or the next evaluation of its tasks) is not counted as running beside it.
    """
    if not task_ids:
        yield
        return
    mark, ttl_ms = uuid.uuid4().hex, int(ttl_seconds * 1000)
    running_keys = [keys.running(portal_id, task_id) for task_id in task_ids]
    counts = script(redis, _ENTER)(keys=running_keys, args=[mark, ttl_ms])
    for task_id, running in zip(task_ids, counts, strict=True):
        if running > 1:
            redis.hincrby(keys.lock_violations(portal_id), str(task_id), 1)
            log.error("evaluation.lock_violation", task_id=task_id, running=running)
    keeper = _Keeper(lambda: bool(script(redis, _MARK)(keys=running_keys, args=[mark, ttl_ms])), ttl_seconds,
                     what=f"running marks of {len(task_ids)} task(s)")
    keeper.start()
    try:
        yield
    finally:
        keeper.stop()
        script(redis, _LEAVE)(keys=running_keys, args=[mark])
