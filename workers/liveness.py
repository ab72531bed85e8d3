"""Liveness of this host's worker and scheduler, for container health checks."""

from __future__ import annotations

import datetime as dt
import socket

from rq import Worker

import keys
from runtime import Runtime
from workers.worker import WORKER_TTL_SECONDS

SCHEDULER_HEARTBEAT_SECONDS = 30


def worker_alive(rt: Runtime, hostname: str | None = None) -> bool:
    """A worker on this host has sent a heartbeat within two worker TTLs."""
    host = hostname or socket.gethostname()
    limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2 * WORKER_TTL_SECONDS)
    return any(worker.hostname == host and worker.last_heartbeat is not None
               and worker.last_heartbeat.replace(tzinfo=worker.last_heartbeat.tzinfo or dt.UTC) > limit
               for worker in Worker.all(connection=rt.redis))


def scheduler_beat(rt: Runtime) -> None:
    """Called on every scheduler tick."""
    rt.redis.set(keys.scheduler_heartbeat(rt.portal.id, socket.gethostname()), 1, ex=SCHEDULER_HEARTBEAT_SECONDS)


def scheduler_alive(rt: Runtime) -> bool:
    return bool(rt.redis.exists(keys.scheduler_heartbeat(rt.portal.id, socket.gethostname())))
