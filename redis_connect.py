"""The Redis client every process uses: one server (``REDIS_URL``) or the master that Sentinels name.

Web, workers, scheduler, CLI and the dashboard all build their clients here, so they reach the same Redis the
same way. With Sentinel the client is redis-py's own ``Sentinel(...).master_for(...)``: its connections ask
the Sentinels for the master's address when they connect, so after a failover new connections go to the new
master. A connection still open to the old master fails (or, if that server came back as a replica, gets
``READONLY``, which redis-py turns into a connection error), is dropped, and connects again, asking again.
Nothing here retries: what a caller does with a failed call (intake spools the event, a job is retried, a
worker's own connection waits) stays the caller's decision.

Nothing connects at build time. Passwords go only to redis-py, never into a message (``describe``).
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from redis import Redis
from redis.sentinel import Sentinel, SentinelManagedConnection

CLIENT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 10, "health_check_interval": 30}
"""Connection options of every client, either way it finds Redis."""
SENTINEL_TIMEOUT_SECONDS = 1.0
"""How long asking one Sentinel for the master may take (connect, then answer). One that does not answer in time
is passed over for the next, so a dead Sentinel delays a new connection by at most this."""

_min_replicas: weakref.WeakKeyDictionary[Redis, int] = weakref.WeakKeyDictionary()


class MasterConnection(SentinelManagedConnection):
    """redis-py's Sentinel-managed connection, asking the Sentinels for the master on *every* connect.

    redis-py 8.1 asks only in ``connect()``. A connection that connects on its own instead, when it sends a
    command while disconnected (a client's retry after a dropped connection, a connection made outside the
    pool such as intake's kept ones), goes to the address it last had, or to redis-py's default
    ``localhost:6379`` if it never had one (redis/redis-py#3874): a worker waiting out a failover would knock
    on the dead master for ever, and intake would write to whatever Redis listens on the default port. Here
    the socket-level connect asks every time, so every way of connecting finds the current master.
    """

    def connect(self) -> None:
        """The plain connection's ``connect`` (the address is looked up in ``_connect``, not before it)."""
        super(SentinelManagedConnection, self).connect()

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class RedisSettings(Protocol):
    """What is read of ``config.settings.Settings`` (this module sits beside ``config``, importing nothing of
    ours, so that every layer may use it)."""

    @property
    def redis_url(self) -> str: ...
    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]: ...
    @property
    def redis_sentinel_master(self) -> str | None: ...
    @property
    def redis_sentinel_password(self) -> SecretStr | None: ...
    @property
    def redis_password(self) -> SecretStr | None: ...
    @property
    def redis_db(self) -> int: ...
    @property
    def taskwarden_redis_min_replicas(self) -> int: ...


def connect(settings: RedisSettings, **options: Any) -> Redis:
    """A client of the configured Redis. ``options`` add to or replace :data:`CLIENT_OPTIONS` (a long-running
    process passes its own ``retry``)."""
    kwargs = {**CLIENT_OPTIONS, **options}
    password = _secret(settings.redis_password)
    if password is not None:
        kwargs["password"] = password  # REDIS_URL's own password, if it has one, takes precedence (redis-py)
    client: Redis
    if settings.sentinel_addresses and settings.redis_sentinel_master is not None:
        client = sentinels(settings).master_for(settings.redis_sentinel_master, db=settings.redis_db,
                                                connection_class=MasterConnection, **kwargs)
    else:
        client = Redis.from_url(settings.redis_url, **kwargs)
    _min_replicas[client] = settings.taskwarden_redis_min_replicas
    return client


def sentinels(settings: RedisSettings) -> Sentinel:
    """The Sentinels of ``REDIS_SENTINELS``, asked with their own password and a short timeout."""
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
                                       "socket_timeout": SENTINEL_TIMEOUT_SECONDS}
    password = _secret(settings.redis_sentinel_password)
    if password is not None:
        sentinel_kwargs["password"] = password
    return Sentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs)


def replicas_to_wait_for(redis: Redis) -> int:
    """How many replicas must acknowledge intake's write of an event before it answers
    (``TASKWARDEN_REDIS_MIN_REPLICAS`` of the settings ``redis`` was built from; 0 for any other client)."""
    return _min_replicas.get(redis, 0)


def describe(settings: RedisSettings) -> str:
    """Where Redis is, for people (the dashboard, messages): addresses and db, never a password."""
    if settings.sentinel_addresses:
        addresses = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                             for host, port in settings.sentinel_addresses)
        return f"redis+sentinel://{addresses}/{settings.redis_sentinel_master}/{settings.redis_db}"
    parts = urlsplit(settings.redis_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
