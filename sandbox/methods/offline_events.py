"""`event.offline.get / clear / error / list` (reference §1.9), ported from `Rest\\Api\\Event`.

All need application auth and an administrator. `get` reserves up to `limit` unreserved rows under a new
`process_id` (so parallel calls get disjoint rows), returns them, and with `clear=1` (the default) deletes
the batch at once; with `clear=0` it returns the `process_id`, the batch stays until `event.offline.clear`
and can be read again with that `process_id`. `clear=0` needs the `rest_offline_extended` feature
(`offline_extended` setting). Rows marked with `event.offline.error` come back only with `error=1`.
"""

from __future__ import annotations

from typing import Any

from sandbox import offline
from sandbox.appstate import AppState
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import RestError, access_denied, argument_error, argument_null
from sandbox.methods.event_bind import require_app
from sandbox.records import php_int

LIST_LIMIT = 50
MESSAGE_ID_LENGTH = 32


def _admin_app(call: Call) -> AppState:
    app = require_app(call)
    if not call.portal.config.is_admin:
        raise access_denied()
    return app


def _lower_keys(params: dict[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in params.items()}


def _process_id(query: dict[str, Any]) -> str | None:
    """`isset($query['process_id']) ? trim(...) : null`: an empty string is a process id too."""
    value = query.get("process_id")
    return None if value is None else str(value).strip()


def _array(value: Any) -> list[Any] | None:
    """A PHP array's values (a list, or a dict of bracket keys); None when `value` is not an array."""
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else None


@register(CLASSIC, "event.offline.get")
def get(call: Call) -> Outcome:
    """`{process_id, events}`: the next rows, reserved (clear=0) or taken off the queue (clear=1)."""
    app = _admin_app(call)
    config = call.portal.config
    query = _lower_keys(call.params)
    clear = 1 if "clear" not in query else php_int(query["clear"])
    process_id = _process_id(query)
    if not clear and not config.offline_extended:
        raise RestError(403, "WRONG_LICENSE",
                        "This feature is not enabled for the current license: extended offline events handling")
    limit = php_int(query["limit"]) if "limit" in query else LIST_LIMIT
    errors = "error" in query and php_int(query["error"]) == 1
    if limit <= 0:
        raise argument_error("Value must be positive integer")
    terms = offline.compile_filter(query.get("filter", {}), offline.GET_FIELDS, config.server_tz, arrays=False)
    pairs = offline.parse_order(query.get("order", {"TIMESTAMP_X": "ASC"}), offline.GET_FIELDS)
    eligible = [row for row in app.offline.values() if row.error == int(errors) and offline.matches(row, terms)]
    returned = not clear
    if process_id is None:
        process_id = offline.new_process_id()
        for row in offline.ordered([row for row in eligible if row.process_id == ""], pairs)[:limit]:
            row.process_id = process_id
    else:
        returned = True
    batch = offline.ordered([row for row in eligible if row.process_id == process_id], pairs)[:limit]
    events = [offline.view(row, config.server_tz) for row in batch]
    if clear and batch:
        offline.delete(app, process_id)
    return Outcome({"process_id": process_id if returned else None, "events": events})


@register(CLASSIC, "event.offline.clear")
def clear(call: Call) -> Outcome:
    """Delete a reserved batch: all of it, or the rows named by `message_id[]` or `id[]`."""
    app = _admin_app(call)
    query = _lower_keys(call.params)
    process_id = _process_id(query)
    if process_id is None:
        raise argument_null("PROCESS_ID")
    if "message_id" in query:
        offline.delete(app, process_id, message_ids=_message_ids(query["message_id"]))
    elif "id" in query:
        offline.delete(app, process_id, ids=_ids(query["id"]))
    else:
        offline.delete(app, process_id)
    return Outcome(True)


def _message_ids(value: Any) -> list[str]:
    items = _array(value)
    if items is None or any(len(str(item).strip()) != MESSAGE_ID_LENGTH for item in items):
        raise argument_error("Value must be array of MESSAGE_ID values")
    return [str(item).strip() for item in items]


def _ids(value: Any) -> list[int]:
    items = _array(value)
    if items is None or any(php_int(item) <= 0 for item in items):
        raise argument_error("Value must be array of integers")
    return [php_int(item) for item in items]


@register(CLASSIC, "event.offline.error")
def error(call: Call) -> Outcome:
    """Mark rows of a reserved batch as errors: they leave the batch and return only with `error=1`."""
    app = _admin_app(call)
    query = _lower_keys(call.params)
    process_id = _process_id(query)
    if process_id is None:
        raise argument_null("PROCESS_ID")
    items = _array(query.get("message_id"))
    if items is None:
        raise argument_error("Value must be array of MESSAGE_ID values")
    if items:
        offline.mark_error(app, process_id, [str(item).strip() for item in items])
    return Outcome(True)


@register(CLASSIC, "event.offline.list")
def list_(call: Call) -> Outcome:
    """Every row with its `PROCESS_ID` and `ERROR`, 50 per page at `start`; nothing is reserved."""
    app = _admin_app(call)
    config = call.portal.config
    query = _lower_keys(call.params)
    terms = offline.compile_filter(query.get("filter", {}), offline.LIST_FIELDS, config.server_tz, arrays=True)
    pairs = offline.parse_order(query.get("order", {"ID": "ASC"}), offline.LIST_FIELDS)
    found = offline.ordered([row for row in app.offline.values() if offline.matches(row, terms)], pairs)
    start = max(call.start or 0, 0)
    page = found[start:start + LIST_LIMIT]
    after = start + len(page)
    return Outcome([offline.view(row, config.server_tz, with_state=True) for row in page], total=len(found),
                   next=after if after < len(found) else None)
