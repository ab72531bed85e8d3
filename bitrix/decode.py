"""Turn a raw HTTP answer into data or a typed error, for both envelopes (classic and REST 3.0)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bitrix.errors import BitrixError, TransportError, make_error


@dataclass(frozen=True)
class Answer:
    """A successful answer: the method's result plus the envelope's paging and timing."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


def decode_response(method: str, status: int, body: bytes, replayed: bool = False) -> Answer:
    """Decode one answer.

    Raises:
        BitrixError: the subclass chosen by the error code of either envelope.
    """
    try:
        data = json.loads(body)
    except ValueError:
        raise _unreadable(method, status) from None
    if not isinstance(data, dict):
        raise _unreadable(method, status)
    if "error" in data:
        raise error_from_envelope(method, data, status)
    if "result" not in data:
        raise _unreadable(method, status)
    time = data.get("time") if isinstance(data.get("time"), dict) else {}
    return Answer(result=data["result"], total=_int_or_none(data.get("total")),
                  next=_int_or_none(data.get("next")), time=time or {}, replayed=replayed)


def error_from_envelope(method: str, data: dict[str, Any], status: int | None = None) -> BitrixError:
    """Classic ``{"error": "CODE", "error_description": ...}`` or v3 ``{"error": {"code", "message"}}``."""
    error = data.get("error")
    if isinstance(error, dict):  # REST 3.0
        code = str(error.get("code") or "UNKNOWN")
        description = str(error.get("message") or "")
        details = [f"{v.get('field')}: {v.get('message')}" for v in error.get("validation") or []
                   if isinstance(v, dict)]
        if details:
            description = f"{description} ({'; '.join(details)})"
    else:
        code = str(error)
        description = str(data.get("error_description") or "")
    time = data.get("time") if isinstance(data.get("time"), dict) else {}
    reset_at = _float_or_none(time.get("operating_reset_at")) if time else None
    return make_error(method, code, description.removesuffix("<br>").strip(), status, reset_at=reset_at)


def _unreadable(method: str, status: int) -> BitrixError:
    if status >= 500:
        return make_error(method, f"HTTP_{status}", "answer is not a Bitrix24 envelope", status)
    return TransportError(method, f"HTTP_{status}", "answer is not a Bitrix24 envelope", status)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
