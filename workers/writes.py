"""Send the writes of one evaluation pass: classic commands batched, REST 3.0 ones in v3 batches.

Deadline writes go through REST 3.0. One write goes alone with an ``Idempotency-Key``; several go in
REST 3.0 batches of 50. A v3 batch that fails does not say which item failed, so its items are then
sent one by one (each with its key; writes are absolute values, so repeating one that already
succeeded is harmless). A portal without v3 answers ERROR_METHOD_NOT_FOUND once (a webhook whose
scopes do not cover v3: insufficient_scope): the classic fallback commands join the classic batch, and
the answer is remembered per portal (for a day, so a portal that gains v3 is noticed) instead of probing
on every write.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import structlog

import keys
from bitrix import elapsed
from bitrix.batch import MAX_COMMANDS, Command
from bitrix.errors import AuthError, BitrixError, MethodNotFound, TransportError
from runtime import Runtime

log = structlog.get_logger(__name__)

V3_MEMORY_SECONDS = 86400
Write = tuple[Command, str | None]


def send_writes(rt: Runtime, writes: dict[str, Write]) -> dict[str, BitrixError]:
    """Send every write; returns the errors by key (absent key: the write succeeded)."""
    has_v3 = portal_has_v3(rt)
    classic: dict[str, Command] = {}
    v3: dict[str, Write] = {}
    for key, (command, idempotency_key) in writes.items():
        if command.v3 and has_v3 is False and command.fallback is not None:
            classic[key] = command.fallback
        elif command.v3:
            v3[key] = (command, idempotency_key)
        else:
            classic[key] = command
    errors: dict[str, BitrixError] = {}
    if v3:
        v3_errors, fallbacks = _send_v3(rt, v3)
        errors.update(v3_errors)
        classic.update(fallbacks)
    if classic:
        errors.update(_send_classic(rt, classic))
    return errors


def _send_classic(rt: Runtime, classic: dict[str, Command]) -> dict[str, BitrixError]:
    """The classic batch, sent once; if its answer is lost, the time entries it clamped are read back with
    ``task.elapseditem.get`` and only what is not already so is sent again (a clamp is confirmed, not repeated).
    """
    try:
        return rt.client.batch(classic, resend_lost=False).errors
    except TransportError:
        done = confirmed_clamps(rt, classic)
        log.warning("writes.answer_lost", writes=len(classic), confirmed=len(done))
        rest = {key: command for key, command in classic.items() if key not in done}
        return rt.client.batch(rest).errors if rest else {}


def confirmed_clamps(rt: Runtime, writes: dict[str, Command]) -> set[str]:
    """The keys of time-entry updates the portal already shows as written (seconds and comment)."""
    updates = {key: command.params for key, command in writes.items()
               if command.method == elapsed.UPDATE_METHOD and isinstance(command.params, list)}
    if not updates:
        return set()
    answers = rt.client.batch({key: elapsed.get(params[0], params[1]) for key, params in updates.items()})
    done = set()
    for key, params in updates.items():
        row = answers.results.get(key)
        wanted = params[2]
        if isinstance(row, dict) and elapsed.entry_from_wire(row).seconds == wanted["SECONDS"] and \
                str(row.get("COMMENT_TEXT") or "") == str(wanted.get("COMMENT_TEXT") or ""):
            done.add(key)
    return done


def _send_v3(rt: Runtime, writes: dict[str, Write]) -> tuple[dict[str, BitrixError], dict[str, Command]]:
    """Returns the errors, and the classic fallbacks to send when the portal turned out to have no v3."""
    errors: dict[str, BitrixError] = {}
    fallbacks: dict[str, Command] = {}
    items = list(writes.items())
    for start in range(0, len(items), MAX_COMMANDS):
        chunk = items[start:start + MAX_COMMANDS]
        if len(chunk) > 1 and portal_has_v3(rt) is not False:
            try:
                rt.client.call("batch", [{"method": c.method, "query": c.params} for _k, (c, _i) in chunk], v3=True)
                remember_v3(rt, True)
                continue
            except BitrixError as failed:
                if _v3_unavailable(failed):
                    remember_v3(rt, False)
                    for key, (c, _i) in chunk:  # a write with no classic form fails, it is not dropped
                        if c.fallback is not None:
                            fallbacks[key] = c.fallback
                        else:
                            errors[key] = failed
                    continue
                if failed.retryable:  # the portal is struggling: the job is retried as a whole
                    errors.update({key: failed for key, _write in chunk})
                    continue
        for key, (command, idempotency_key) in chunk:
            error = _send_one(rt, command, idempotency_key)
            if error is not None and _v3_unavailable(error) and command.fallback is not None:
                fallbacks[key] = command.fallback
            elif error is not None:
                errors[key] = error
    return errors, fallbacks


def _send_one(rt: Runtime, command: Command, idempotency_key: str | None) -> BitrixError | None:
    if portal_has_v3(rt) is False:
        return MethodNotFound(command.method, "ERROR_METHOD_NOT_FOUND", "the portal has no REST 3.0 API")
    try:
        rt.client.call(command.method, command.params, v3=True, idempotency_key=idempotency_key)
    except BitrixError as error:
        if _v3_unavailable(error):
            remember_v3(rt, False)
        return error
    remember_v3(rt, True)
    return None


def _v3_unavailable(error: BitrixError) -> bool:
    """No REST 3.0 for us: the portal lacks it, or the webhook's scopes do not cover it (v3 documents
    the scope as ``tasks`` where classic says ``task``). Either way the classic form is the answer."""
    return isinstance(error, MethodNotFound) or (isinstance(error, AuthError)
                                                 and "INSUFFICIENTSCOPE" in error.code.upper().replace("_", ""))


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
