"""Send the writes of one evaluation pass: classic commands batched, REST 3.0 ones one by one.

Deadline writes go through REST 3.0 with an ``Idempotency-Key``; a portal without v3 answers
ERROR_METHOD_NOT_FOUND once, the classic fallback is used, and the answer is remembered per portal
(for a day, so a portal that gains v3 is noticed) instead of probing on every write.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import keys
from bitrix.batch import Command
from bitrix.errors import BitrixError, MethodNotFound
from runtime import Runtime

V3_MEMORY_SECONDS = 86400


def send_writes(rt: Runtime, writes: dict[str, tuple[Command, str | None]]) -> dict[str, BitrixError]:
    """Send every write; returns the errors by key (absent key: the write succeeded)."""
    has_v3 = portal_has_v3(rt)
    batched: dict[str, Command] = {}
    singles: dict[str, tuple[Command, str | None]] = {}
    for key, (command, idempotency_key) in writes.items():
        if command.v3 and has_v3 is False and command.fallback is not None:
            command = command.fallback
        if command.v3:
            singles[key] = (command, idempotency_key)
        else:
            batched[key] = command
    errors = rt.client.batch(batched).errors if batched else {}
    for key, (command, idempotency_key) in singles.items():
        error = _send_v3(rt, command, idempotency_key)
        if error is not None:
            errors[key] = error
    return errors


def _send_v3(rt: Runtime, command: Command, idempotency_key: str | None) -> BitrixError | None:
    use_v3 = portal_has_v3(rt) is not False
    try:
        if use_v3:
            rt.client.call(command.method, command.params, v3=True, idempotency_key=idempotency_key)
            remember_v3(rt, True)
            return None
    except MethodNotFound:
        remember_v3(rt, False)
    except BitrixError as error:
        return error
    if command.fallback is None:
        return MethodNotFound(command.method, "ERROR_METHOD_NOT_FOUND", "no REST 3.0 API and no classic form")
    try:
        rt.client.run(command.fallback)
    except BitrixError as error:
        return error
    return None


def portal_has_v3(rt: Runtime) -> bool | None:
    """What we last learnt about the portal's REST 3.0 API; None when not yet known."""
    value = rt.redis.get(keys.v3_support(rt.portal.id))
    return None if value is None else value == b"1"


def remember_v3(rt: Runtime, available: bool) -> None:
    rt.redis.set(keys.v3_support(rt.portal.id), b"1" if available else b"0", ex=V3_MEMORY_SECONDS)


def idempotency_key(rule: str, task_id: int, value: object, changed: dt.datetime | None) -> str:
    """Derived from rule, task, target value and the task's change time as read (SPEC section 4).

    The change time matters: without it, a user undoing our write and a second legitimate write of
    the same value would share a key, and the portal would replay instead of executing it.
    """
    stamp = changed.astimezone(dt.UTC).isoformat() if changed else "-"
    digest = hashlib.sha256(f"{rule}|{task_id}|{value}|{stamp}".encode()).hexdigest()
    return f"tw-{digest[:40]}"
