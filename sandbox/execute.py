"""Running one method call inside the portal: operating-time check, handler, envelope (§2.3, §3.2).

Used for top-level requests and for each `batch` sub-call. The caller holds `portal.lock`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox import dates
from sandbox.calls import CLASSIC, V3, Call, Method
from sandbox.errors import RestError, V3Error, method_not_found, operation_time_limit
from sandbox.store import Portal

EXEMPT = frozenset({"batch"})
"""`batch` itself is not accounted; its sub-calls are (§3.2)."""


@dataclass
class Answer:
    """What a call produced: HTTP status, JSON body, error code (None on success)."""

    status: int
    body: dict[str, Any]
    error: str | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)


def lookup(api: str, name: str) -> Method:
    """The method table entry, or ERROR_METHOD_NOT_FOUND."""
    method = (V3 if api == "v3" else CLASSIC).get(name)
    if method is None:
        raise method_not_found()
    return method


def log_params(api: str, name: str, params: dict[str, Any]) -> Any:
    """Params as the method sees them: positional methods get a list of values."""
    method = (V3 if api == "v3" else CLASSIC).get(name)
    return list(params.values()) if method is not None and method.positional else params


def run(portal: Portal, api: str, name: str, params: dict[str, Any], start: int | None) -> Answer:
    """Execute `name` with `params` and wrap the result or error in the right envelope."""
    started = time.time()
    try:
        method = lookup(api, name)
    except RestError as exc:
        return Answer(exc.status, exc.body(), exc.code)
    if name not in EXEMPT and portal.clock.is_blocked(name, started, portal.config.operating_limit):
        error = operation_time_limit() if api == "classic" else V3Error(
            429, "RATELIMITEXCEPTION", "Method is blocked due to operation time limit.")
        return Answer(error.status, error.body(), error.code)
    call = Call(portal, params, start)
    cost = 0.0 if name in EXEMPT else portal.config.cost_of(name)
    try:
        outcome = method.handler(call)
    except RestError as exc:
        _account(portal, name, started, cost)
        return Answer(exc.status, exc.body(), exc.code, call.commands)
    _account(portal, name, started, cost)
    body: dict[str, Any] = {"result": outcome.result}
    if outcome.next is not None:
        body["next"] = outcome.next
    if outcome.total is not None:
        body["total"] = outcome.total
    body["time"] = time_block(portal, name, started, cost)
    return Answer(200, body, None, call.commands)


def _account(portal: Portal, name: str, started: float, cost: float) -> None:
    if cost > 0:
        portal.clock.record(name, started, cost)


def time_block(portal: Portal, name: str, started: float, cost: float) -> dict[str, Any]:
    """The `time` object of every answer; `operating` is this method's total in the window."""
    finish = time.time()
    tz = portal.config.server_tz
    exempt = name in EXEMPT
    return {
        "start": started,
        "finish": finish,
        "duration": finish - started + cost,
        "processing": cost,
        "date_start": dates.iso(datetime.fromtimestamp(started, UTC), tz),
        "date_finish": dates.iso(datetime.fromtimestamp(finish, UTC), tz),
        "operating_reset_at": int(finish + 600) if exempt else portal.clock.reset_at(name, finish),
        "operating": 0 if exempt else round(portal.clock.used(name, finish), 6),
    }
