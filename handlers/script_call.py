"""Intake's one script call per event, sent on a redis-py ``Connection`` kept idle between events.

Through the client, most of ``Redis.evalsha``'s CPU goes to checking a connection out of its pool and
back (locks, a readiness poll, metrics hooks); the same command on a connection kept here costs a third
of it, and intake makes this one call per event. The
connections are built from the client's pool settings (URL, timeouts, health checks), so they behave
like the client's. Idle ones wait in a deque per pool: ``pop`` and ``append`` are atomic, so threads
share it without a lock. What the client's wrapper added and is kept here: one retry on a dropped
connection, and loading a script Redis lost.
"""

from __future__ import annotations

import os
import weakref
from collections import deque
from collections.abc import Sequence
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
            answer = _evalsha(connection, script, keys, args)
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()
            answer = _evalsha(connection, script, keys, args)  # reconnects; a second failure is the caller's
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


def _idle_connections(pool: ConnectionPool) -> deque[Any]:
    """This process's idle connections for ``pool`` (a forked child starts with none)."""
    idle = _idle.get(pool)
    if idle is None:
        idle = _idle[pool] = deque()
    return idle
