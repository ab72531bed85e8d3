"""The portals that installed Taskwarden, kept in Redis: one hash per portal and a set of their member ids.

Tokens (access, refresh) and the ``application_token`` are stored sealed (``portals.crypto``); everything
else is plain, since it is no secret (the endpoint, the domain, times, the status). Webhook mode does not
use the registry: its one portal comes from the environment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

from redis import Redis
from redis.typing import EncodableT, FieldT

import keys
from portals.crypto import Box

ACTIVE, NEEDS_REINSTALL, REMOVED = "active", "needs_reinstall", "removed"
SEALED = ("access_token", "refresh_token", "application_token")


@dataclass(frozen=True)
class PortalRecord:
    member_id: str
    client_endpoint: str
    domain: str
    status: str = ACTIVE
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    application_token: str = field(default="", repr=False)
    expires_at: float = 0.0
    scope: str = ""
    installed_at: float = 0.0
    updated_at: float = 0.0


def save(redis: Redis, box: Box, record: PortalRecord) -> None:
    """Store the whole record (tokens sealed) and list the portal."""
    mapping: dict[FieldT, EncodableT] = {}
    for item in fields(PortalRecord):
        value = getattr(record, item.name)
        mapping[item.name] = box.seal(value) if item.name in SEALED and value else str(value)
    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.portal_record(record.member_id), mapping=mapping)
    pipe.sadd(keys.PORTALS, record.member_id)
    pipe.execute()


def load(redis: Redis, box: Box, member_id: str) -> PortalRecord | None:
    raw: dict[bytes, bytes] = redis.hgetall(keys.portal_record(member_id))  # type: ignore[assignment]
    if not raw:
        return None
    values: dict[str, Any] = {key.decode(): value.decode() for key, value in raw.items()}
    for name in SEALED:
        values[name] = box.open(values[name]) if values.get(name) else ""
    for name in ("expires_at", "installed_at", "updated_at"):
        values[name] = float(values.get(name) or 0)
    known = {item.name for item in fields(PortalRecord)}
    return PortalRecord(**{name: value for name, value in values.items() if name in known})


def member_ids(redis: Redis) -> list[str]:
    return sorted(raw.decode() if isinstance(raw, bytes) else raw for raw in redis.smembers(keys.PORTALS))


def store_tokens(redis: Redis, box: Box, member_id: str, access: str, refresh: str, expires_at: float) -> None:
    """A refreshed pair, stored before it is used (a crash after the refresh must not lose the new refresh
    token: the old one no longer works)."""
    redis.hset(keys.portal_record(member_id), mapping={
        "access_token": box.seal(access), "refresh_token": box.seal(refresh), "expires_at": str(expires_at),
        "updated_at": str(time.time())})


def set_status(redis: Redis, member_id: str, status: str) -> None:
    redis.hset(keys.portal_record(member_id), mapping={"status": status, "updated_at": str(time.time())})


def forget_tokens(redis: Redis, member_id: str) -> None:
    redis.hdel(keys.portal_record(member_id), "access_token", "refresh_token")


def reseal_all(redis: Redis, box: Box) -> int:
    """Re-encrypt every stored secret under the current key; returns the portals done."""
    done = 0
    for member_id in member_ids(redis):
        record = load(redis, box, member_id)
        if record is not None:
            save(redis, box, record)
            done += 1
    return done


__all__ = ["ACTIVE", "NEEDS_REINSTALL", "REMOVED", "PortalRecord", "forget_tokens", "load", "member_ids",
           "replace", "reseal_all", "save", "set_status", "store_tokens"]
