"""The offline event queue of an application-mode portal (reference §1.9), ported from `EventOfflineTable`.

A row is keyed by `MESSAGE_ID = md5(EVENT_NAME|json(EVENT_DATA))`. A repeated event with the same data
updates the row that is not reserved (`PROCESS_ID` empty) instead of adding one, so 1000 edits of a task
leave one ONTASKUPDATE row; once a row is reserved by a batch, a repeat adds a new row. Callers hold the
portal's lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sandbox import dates
from sandbox.appstate import AppState, OfflineRow
from sandbox.errors import argument_error

GET_FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
LIST_FIELDS = (*GET_FIELDS, "PROCESS_ID", "ERROR")
OPERATIONS = ("", "=", ">", "<", ">=", "<=", "@", "%")
"""`IRestService::sanitizeFilter`'s operations: none means `=`, `@` is IN, `%` is LIKE."""
_KEY = re.compile(r"^([^a-zA-Z]*)(.*)$", re.DOTALL)
_PROCESS_ALPHABET = string.ascii_letters + string.digits


def message_id(event: str, data: Any) -> str:
    """`getMessageId`: the same event with the same data gets the same key."""
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return hashlib.md5(f"{event}|{encoded}".encode()).hexdigest()  # noqa: S324 - a key, as the server makes it


def new_process_id() -> str:
    """`Random::getString(32)`."""
    return "".join(secrets.choice(_PROCESS_ALPHABET) for _ in range(32))


def enqueue(app: AppState, event: str, data: Any, user_id: int, now: datetime) -> OfflineRow:
    """`callEvent`: update the unreserved row with this key, or add one (error rows keep their mark)."""
    key = message_id(event, data)
    additional = {"user_id": str(user_id)}
    for row in app.offline.values():
        if row.message_id == key and row.process_id == "":
            row.timestamp, row.data, row.additional = now, data, additional
            return row
    row = OfflineRow(app.new_id("offline"), now, event, data, additional, key)
    app.offline[row.id] = row
    return row


def _value(row: OfflineRow, field: str) -> Any:
    return {"ID": row.id, "TIMESTAMP_X": row.timestamp, "EVENT_NAME": row.event_name, "MESSAGE_ID": row.message_id,
            "PROCESS_ID": row.process_id, "ERROR": row.error}[field]


def compile_filter(filter_: Any, allowed: tuple[str, ...], server_tz: str,
                   arrays: bool) -> list[tuple[str, str, Any]]:
    """`sanitizeFilter`: `(operation, field, value)` terms; an unknown field or operation is an error, and so
    is an array value unless `arrays` (`event.offline.get` refuses them, `event.offline.list` takes them)."""
    if isinstance(filter_, list):
        filter_ = {str(index): value for index, value in enumerate(filter_)}
    if not isinstance(filter_, dict):
        raise argument_error("The filter is not an array.")
    terms = []
    for raw_key, raw_value in filter_.items():
        match = _KEY.match(str(raw_key).upper())
        operation, field = (match.group(1), match.group(2)) if match else ("", str(raw_key))
        if operation not in OPERATIONS:
            raise argument_error(f"Filter operation not allowed: {operation}")
        if field not in allowed:
            raise argument_error(f"Filter field not allowed: {field}")
        if isinstance(raw_value, list | dict) and not arrays:
            raise argument_error(f"The value of an argument '{raw_key}' has an invalid type")
        terms.append((operation or "=", field, _coerce(field, raw_value, server_tz)))
    return terms


def _coerce(field: str, value: Any, server_tz: str) -> Any:
    if isinstance(value, list | dict):
        return [_coerce(field, item, server_tz) for item in (value.values() if isinstance(value, dict) else value)]
    if field in ("ID", "ERROR"):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if field == "TIMESTAMP_X":
        try:
            return dates.parse(value, server_tz)
        except dates.BadDate:
            return None
    return "" if value is None else str(value)


def matches(row: OfflineRow, terms: list[tuple[str, str, Any]]) -> bool:
    """True when the row passes every term."""
    return all(_passes(_value(row, field), operation, wanted) for operation, field, wanted in terms)


def _passes(actual: Any, operation: str, wanted: Any) -> bool:
    if operation == "@" or isinstance(wanted, list):
        return actual in (wanted if isinstance(wanted, list) else [wanted])
    if operation == "%":
        return str(wanted).lower() in str(actual).lower()
    if operation == "=":
        return bool(actual == wanted)
    if wanted is None:
        return False
    try:
        return bool({">": actual > wanted, "<": actual < wanted, ">=": actual >= wanted,
                     "<=": actual <= wanted}[operation])
    except TypeError:
        return False


def parse_order(order: Any, allowed: tuple[str, ...]) -> list[tuple[str, bool]]:
    """`sanitizeOrder`: `{FIELD: ASC|DESC}` (or a list of field names) as `(field, descending)` pairs."""
    if isinstance(order, list):
        order = {str(index): value for index, value in enumerate(order)}
    if not isinstance(order, dict):
        raise argument_error("The order is not an array.")
    pairs = []
    for raw_key, direction in order.items():
        key = str(raw_key).upper()
        if key.isdigit():
            field, text = str(direction).upper(), "ASC"
        else:
            field, text = key, str(direction).upper()
        if field not in allowed:
            raise argument_error(f"Order field not allowed: {field}")
        if text not in ("ASC", "DESC"):
            raise argument_error("Order direction should be one of {ASC|DESC}")
        pairs.append((field, text == "DESC"))
    return pairs


def ordered(rows: list[OfflineRow], pairs: list[tuple[str, bool]]) -> list[OfflineRow]:
    """Rows sorted by `pairs`, ties by ID (a stable sort over rows in ID order)."""
    result = sorted(rows, key=lambda row: row.id)
    for field, descending in reversed(pairs):
        result.sort(key=_by(field), reverse=descending)
    return result


def _by(field: str) -> Callable[[OfflineRow], Any]:
    return lambda row: _value(row, field)


def view(row: OfflineRow, server_tz: str, with_state: bool = False) -> dict[str, Any]:
    """A row as `event.offline.get` prints it (DB values are strings); `event.offline.list` adds the state."""
    out: dict[str, Any] = {"ID": str(row.id), "TIMESTAMP_X": dates.iso(row.timestamp, server_tz),
                           "EVENT_NAME": row.event_name, "EVENT_DATA": row.data,
                           "EVENT_ADDITIONAL": row.additional, "MESSAGE_ID": row.message_id}
    if with_state:
        out.update(PROCESS_ID=row.process_id, ERROR=str(row.error))
    return out


def delete(app: AppState, process_id: str, ids: list[int] | None = None,
           message_ids: list[str] | None = None) -> None:
    """`clearEvents` / `clearEventsByMessageId`: every row of the batch, or those listed."""
    for row in list(app.offline.values()):
        if row.process_id != process_id:
            continue
        if ids is not None and row.id not in ids:
            continue
        if message_ids is not None and row.message_id not in message_ids:
            continue
        del app.offline[row.id]


def mark_error(app: AppState, process_id: str, message_ids: list[str]) -> None:
    """`markError`: the listed rows of the batch become error rows (no longer reserved); the same keys'
    rows outside the batch that are not errors are deleted, as the server's three statements do."""
    for row in list(app.offline.values()):
        if row.message_id in message_ids and row.error == 0 and row.process_id != process_id:
            del app.offline[row.id]
    for row in app.offline.values():
        if row.message_id in message_ids and row.error == 0:
            row.error, row.process_id = 1, ""
