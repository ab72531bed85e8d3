"""Counters for ``/metrics``, kept in Redis so they add up across gunicorn workers and RQ work horses.

A process counts in memory and flushes to one Redis hash per portal: the web process every second from a
background thread, a worker at the end of each job (the work horse exits right after). Counting never
touches Redis on the hot path, and a lost flush loses a second of counts, never an event.
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError

import keys

log = structlog.get_logger(__name__)

FLUSH_SECONDS = 1.0

_lock = threading.Lock()
_pending: dict[tuple[str, str, str], float] = {}
_flusher: threading.Thread | None = None


def _after_fork_in_child() -> None:
    """A forked child (gunicorn worker, RQ work horse) must not flush its parent's counts a second time,
    and must not inherit a lock that the parent's flusher held at the moment of the fork."""
    global _lock
    _lock = threading.Lock()
    _pending.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def count(portal_id: str, name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to counter ``name`` with ``labels`` (values must never be secrets)."""
    field = _field(name, tuple(sorted(labels.items())))
    with _lock:
        key = (portal_id, field, name)
        _pending[key] = _pending.get(key, 0) + amount


@lru_cache(maxsize=4096)
def _field(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The hash field of a counter: cached, since intake counts the same few on every event."""
    return json.dumps([name, [list(pair) for pair in labels]], separators=(",", ":"))


def discard_pending() -> None:
    """Forget unflushed counts (tests start each case from an empty database)."""
    with _lock:
        _pending.clear()


def flush(redis: Redis) -> None:
    """Write the pending counts to Redis in one pipeline; on failure they are kept for the next flush."""
    with _lock:
        batch = dict(_pending)
        _pending.clear()
    if not batch:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for (portal_id, field, _name), amount in batch.items():
            pipe.hincrbyfloat(keys.metrics(portal_id), field, amount)
        pipe.execute()
    except RedisError:
        with _lock:
            for key, amount in batch.items():
                _pending[key] = _pending.get(key, 0) + amount


def start_flusher(redis: Redis) -> None:
    """Flush every second in the background (web processes); one thread per process."""
    global _flusher
    with _lock:
        if _flusher is not None and _flusher.is_alive():
            return
        _flusher = threading.Thread(target=_flush_forever, args=(redis,), name="metrics-flusher", daemon=True)
        _flusher.start()


def _flush_forever(redis: Redis) -> None:
    stop = threading.Event()
    while not stop.wait(FLUSH_SECONDS):
        flush(redis)


def read(redis: Redis, portal_id: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """All flushed counters of a portal: name -> [(labels, value)]."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    raw: dict[Any, Any] = redis.hgetall(keys.metrics(portal_id))
    for field, value in raw.items():
        name, labels = json.loads(field)
        found.setdefault(name, []).append((dict(labels), float(value)))
    return found
