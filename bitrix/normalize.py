"""Numbers arrive as strings from classic methods ("8017", "3600"); normalise them at the boundary."""

from __future__ import annotations

import datetime as dt
from typing import Any


def as_int(value: Any, default: int = 0) -> int:
    """``"42"``, ``42`` or ``42.0`` to 42; empty or missing values to ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(float(value))


def as_str(value: Any) -> str:
    """None to ``""``, anything else to its text."""
    return "" if value is None else str(value)


def as_datetime(value: Any) -> dt.datetime | None:
    """ISO 8601 with offset to an aware datetime; empty to None. Naive values are read as UTC."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
