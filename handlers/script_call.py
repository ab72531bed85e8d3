"""Intake's one script call per event, sent on a redis-py ``Connection`` kept idle between events.

Through the client, most of ``Redis.evalsha``'s CPU goes to checking a connection out of its pool and
back (locks, a readiness poll, metrics hooks); the same command on a connection kept here costs a third
of it, and intake makes this one call per event. The
connections are built from the client's pool settings (URL, timeouts, health checks), so they behave
like the client's. Idle ones wait in a deque per pool: ``pop`` and ``append`` are atomic, so threads
share it without a lock. What the client's wrapper added and is kept here: one retry on a dropped
connection, and loading a script Redis lost.

A connection is connected as the pool connects its own, with ``connect()``, before each use and before the
retry: with Sentinel (``redis_connect``) that is where a Sentinel-managed connection asks the
Sentinels for the master (redis-py's own class asks nowhere else), and one still open to a master that was
demoted fails on ``READONLY`` and is retried. A connection error also drops the pool's other idle
connections, which most likely point at the same lost server: the retry, and the next events, connect
afresh (to the new master) instead of each finding a dead socket of its own, which over a network can take
a whole socket timeout.

``TASKWARDEN_REDIS_MIN_REPLICAS``: ``WAIT`` counts the replicas that have every write of *its own*
connection, so only the connection that ran the script can ask. A caller that needs it runs the script
inside ``replicas_acknowledging`` (``handlers.coalesce``).
"""

from __future__ import annotations

import os
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis import Redis
from redis.commands.core import Script
from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_IDLE = 32
"""Connections kept per pool and process; more are closed when handed back."""

_idle: weakref.WeakKeyDictionary[ConnectionPool, deque[Any]] = weakref.WeakKeyDictionary()
os.register_at_fork(after_in_child=_idle.clear)  # a forked child must not share its parent's sockets


@dataclass
class ReplicaWait:
    """Asks ``run_script`` to follow a script that wrote with ``WAIT replicas timeout_ms`` on its connection."""

    replicas: int
    timeout_ms: int
    wrote: Callable[[Any], bool]
    """Whether a script's answer says it wrote something (otherwise there is nothing to wait for)."""
    acknowledged: int | None = None
    """How many replicas acknowledged the last writing script's writes; None while none wrote."""


_replica_wait: ContextVar[ReplicaWait | None] = ContextVar("replica_wait", default=None)
"""Per thread, and per greenlet under gevent: the ``ReplicaWait`` of the script calls running in this context."""


@contextmanager
def replicas_acknowledging(wait: ReplicaWait) -> Iterator[ReplicaWait]:
    """Every ``run_script`` in the block whose answer ``wait.wrote`` is followed by ``WAIT`` on the same
    connection, and ``wait.acknowledged`` set to what it answered."""
    token = _replica_wait.set(wait)
    try:
        yield wait
    finally:
        _replica_wait.reset(token)


def run_script(redis: Redis, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``EVALSHA`` (``EVAL`` once if Redis lost the script); one retry when the connection turns out dead
    (Redis restarted, idle socket closed). Raises ``RedisError``."""
    idle = _idle_connections(redis.connection_pool)
    try:
        connection = idle.pop()
    except IndexError:
        pool = redis.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
    try:
        try:
            connection.connect()  # a no-op (under a microsecond) when it is connected
            answer = _evalsha(connection, script, keys, args)
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()
            _drop(idle)  # they most likely lead to the same lost server
            connection.connect()
            answer = _evalsha(connection, script, keys, args)  # a second failure is the caller's
        wait = _replica_wait.get()
        if wait is not None and wait.wrote(answer):
            wait.acknowledged = _wait_for_replicas(connection, wait)
    except BaseException:
        connection.disconnect()  # never keep a connection that may have an unread answer on it
        raise
    if len(idle) < MAX_IDLE:
        idle.append(connection)
    else:
        connection.disconnect()
    return answer


def _evalsha(connection: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    # hiredis packs the command itself: redis-py's wrapper around it type-checks every argument again
    connection.send_packed_command([pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))])
    try:
        return connection.read_response()
    except NoScriptError:  # EVAL also caches the script under its sha
        connection.send_packed_command([pack_command(("EVAL", script.script, len(keys), *keys, *args))])
        return connection.read_response()


def _wait_for_replicas(connection: Any, wait: ReplicaWait) -> int:
    """``WAIT``: how many replicas have this connection's writes, waiting at most ``wait.timeout_ms``."""
    command: tuple[Any, ...] = ("WAIT", wait.replicas, wait.timeout_ms)
    connection.send_packed_command([pack_command(command)])
    return int(connection.read_response())


def _drop(idle: deque[Any]) -> None:
    """Close every idle connection of a pool (threads may take one meanwhile: each keeps what it took)."""
    while True:
        try:
            connection = idle.pop()
        except IndexError:
            return
        connection.disconnect()


def _idle_connections(pool: ConnectionPool) -> deque[Any]:
    """This process's idle connections for ``pool`` (a forked child starts with none)."""
    idle = _idle.get(pool)
    if idle is None:
        idle = _idle[pool] = deque()
    return idle
