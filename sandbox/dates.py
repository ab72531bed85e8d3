"""Date input and output the way the portal does it (reference §10).

Stored values are aware datetimes. Classic `tasks.task.*` prints them in the calling user's offset,
`task.elapseditem.*` and `time.date_*` in the server's offset. Input is read like PHP `strtotime`
for the formats clients actually send: ISO 8601 with an offset is exact; a naive string is read in
the server zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo


class BadDate(ValueError):
    """A value that cannot be read as a date."""


@lru_cache(maxsize=32)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo; the settings name zones by IANA key."""
    return ZoneInfo(name)


def now() -> datetime:
    """The current instant, UTC, whole seconds (the portal stores seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


def parse(value: Any, server_tz: str) -> datetime:
    """An aware datetime from ISO 8601 text, a Unix timestamp or a datetime.

    Raises:
        BadDate: the value is not a date.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise BadDate(value) from exc
    else:
        raise BadDate(repr(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(server_tz))
    return parsed.replace(microsecond=0)


def parse_optional(value: Any, server_tz: str) -> datetime | None:
    """Like `parse`, but an empty value (None, "", false) means no date."""
    if value in (None, "", False):
        return None
    return parse(value, server_tz)


def iso(value: datetime | None, tz: str) -> str | None:
    """`date('c')`-style text in zone `tz`, e.g. `2025-10-24T19:00:00+03:00`."""
    if value is None:
        return None
    return value.astimezone(zone(tz)).isoformat(timespec="seconds")


def iso_utc(value: datetime | None) -> str | None:
    """Zone-neutral text for the control API."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def ago(days: float = 0, hours: float = 0) -> datetime:
    """An instant in the past (negative values give the future), for seeds."""
    return now() - timedelta(days=days, hours=hours)
