"""`task.item.userfield.*`: positional, admin-only writes, every error ERROR_CORE + `<br>` (§8)."""

from __future__ import annotations

from typing import Any

from sandbox import querying, ufdefs
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import core_error

PREFIX = "task.item.userfield."
FILTERABLE = ("ID", "FIELD_NAME", "USER_TYPE_ID", "XML_ID", "MULTIPLE", "MANDATORY")
SORTABLE = ("ID", "FIELD_NAME", "USER_TYPE_ID", "SORT")
TYPE_TITLES = {"string": "String", "double": "Number", "datetime": "Date/Time", "boolean": "Yes/No"}


def _require_admin(call: Call) -> None:
    if not call.portal.config.is_admin:
        raise core_error("Access denied.")


def _arg(call: Call, index: int) -> Any:
    values = call.values()
    return values[index] if index < len(values) else None


@register(CLASSIC, PREFIX + "gettypes", positional=True)
def get_types(call: Call) -> Outcome:
    """The four types that work for tasks."""
    return Outcome([{"ID": type_id, "title": title} for type_id, title in TYPE_TITLES.items()], total=0)


@register(CLASSIC, PREFIX + "getlist", positional=True)
def get_list(call: Call) -> Outcome:
    """Definitions incl. the system fields; ORDER and FILTER by position, non-arrays → []."""
    order, filter_ = _arg(call, 0), _arg(call, 1)
    conditions = querying.compile_filter(filter_ if isinstance(filter_, dict) else {}, _coerce, FILTERABLE)
    found = [definition for definition in call.portal.userfields.values() if querying.matches(definition, conditions)]
    pairs = querying.parse_order(order if isinstance(order, dict) else {}, SORTABLE) or [("ID", False)]
    rows = [ufdefs.view(definition) for definition in querying.sort_records(found, pairs)]
    return Outcome(rows, total=len(rows))


def _coerce(field: str, value: Any) -> Any:
    if field == "ID":
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    return value


@register(CLASSIC, PREFIX + "get", positional=True)
def get(call: Call) -> Outcome:
    """One definition by ID (position 0)."""
    if not call.values():
        raise core_error("No parameters found.")
    return Outcome(ufdefs.view(ufdefs.find(call.portal, _arg(call, 0))))


@register(CLASSIC, PREFIX + "add", positional=True)
def add(call: Call) -> Outcome:
    """New definition from PARAMS (position 0); with any other shape the keys are lost (§8.1)."""
    _require_admin(call)
    values = call.values()
    params = values[0] if len(values) == 1 and isinstance(values[0], dict) else dict(enumerate(values))
    return Outcome(ufdefs.add_definition(call.portal, {str(key): value for key, value in params.items()}))


@register(CLASSIC, PREFIX + "update", positional=True)
def update(call: Call) -> Outcome:
    """Change settings of ID (position 0) from DATA (position 1); others stay as they are."""
    _require_admin(call)
    definition = ufdefs.find(call.portal, _arg(call, 0))
    data = _arg(call, 1)
    if not isinstance(data, dict) or not data:
        raise core_error("Fail to update user field.")
    ufdefs.update_definition(call.portal, definition["ID"], data)
    return Outcome(True)


@register(CLASSIC, PREFIX + "delete", positional=True)
def delete(call: Call) -> Outcome:
    """Remove the definition ID (position 0)."""
    _require_admin(call)
    definition = ufdefs.find(call.portal, _arg(call, 0))
    del call.portal.userfields[definition["ID"]]
    return Outcome(True)
