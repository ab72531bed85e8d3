"""Classic `tasks.task.get / list / update` — an Engine controller: named params (§6.1-6.3)."""

from __future__ import annotations

from typing import Any

from sandbox import dates, querying, records, taskview
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import RestError

PAGE_SIZE = 50
FILTERABLE = ("ID", "TITLE", "GROUP_ID", "RESPONSIBLE_ID", "CREATED_BY", "STATUS", "CHANGED_DATE",
              "CREATED_DATE", "DEADLINE", "CLOSED_DATE")
SORTABLE = FILTERABLE
READ_ONLY = ("ID", "CHANGED_DATE", "CLOSED_DATE")


def _internal(code: str, text: str) -> RestError:
    """Engine-controller errors: status 400, text suffixed ` (internal error)`."""
    return RestError(400, code, f"{text} (internal error)")


def _task_id(call: Call) -> int:
    raw = call.named("taskId")
    task_id = records.php_int(raw) if raw not in (None, "") else 0
    if task_id <= 0:
        raise RestError(400, "0", "wrong task id")
    return task_id


def _select(call: Call) -> list[str] | None:
    select = call.named("select")
    if select is None or select == "":
        return None
    if isinstance(select, dict):
        return [str(value) for value in select.values()]
    if not isinstance(select, list):
        raise _internal("100", "Invalid value {select} to match with parameter {select}. "
                               "Should be value of type array.")
    return [str(value) for value in select]


@register(CLASSIC, "tasks.task.get")
def get(call: Call) -> Outcome:
    """`{"task": {...}}`; a missing or invisible task is HTTP 200 `result: []` (§6.1)."""
    task_id = _task_id(call)
    select = _select(call)
    task = call.portal.tasks.get(task_id)
    if task is None:
        return Outcome([])
    return Outcome({"task": taskview.classic(task, select, call.portal.config.user_tz,
                                             spent=_spent(call, [task], select))})


@register(CLASSIC, "tasks.task.list")
def list_(call: Call) -> Outcome:
    """Filtered, ordered, 50 per page at `start`; `start=-1` skips the count (§5, §6.2)."""
    filter_ = call.named("filter")
    conditions = querying.compile_filter(filter_ if isinstance(filter_, dict) else {}, _coercer(call), FILTERABLE)
    order = querying.parse_order(call.named("order"), SORTABLE)
    if order is None:
        raise _internal("0", "TASKS_FAILED_WRONG_ORDER_FIELD")
    found = [task for task in querying.candidates(call.portal.tasks, conditions) if querying.matches(task, conditions)]
    found = querying.sort_records(found, order or [("ID", True)])
    select = _select(call)
    tz = call.portal.config.user_tz
    start = call.start or 0
    if start == -1:
        page = found[:PAGE_SIZE]
        spent = _spent(call, page, select)
        return Outcome({"tasks": [taskview.classic(task, select, tz, True, spent) for task in page]})
    offset = max(start, 0) // PAGE_SIZE * PAGE_SIZE
    page = found[offset:offset + PAGE_SIZE]
    after = offset + len(page)
    spent = _spent(call, page, select)
    return Outcome({"tasks": [taskview.classic(task, select, tz, True, spent) for task in page]},
                   total=len(found), next=after if after < len(found) else None)


def _spent(call: Call, page: list[dict[str, Any]], select: list[str] | None) -> dict[int, int] | None:
    if not taskview.wants_time_spent(select):
        return None
    return records.time_spent(call.portal, {task["ID"] for task in page})


def _coercer(call: Call) -> Any:
    server_tz = call.portal.config.server_tz

    def coerce(field: str, value: Any) -> Any:
        if field in records.TASK_DATE_FIELDS or _is_datetime_uf(call, field):
            try:
                return dates.parse_optional(value, server_tz)
            except dates.BadDate:
                return value
        if field in records.TASK_INT_FIELDS:
            return None if value in (None, "") else records.php_int(value)
        return value
    return coerce


def _is_datetime_uf(call: Call, field: str) -> bool:
    definition = records.userfield_by_name(call.portal, field) if field.startswith("UF_") else None
    return definition is not None and definition["USER_TYPE_ID"] == "datetime"


@register(CLASSIC, "tasks.task.update")
def update(call: Call) -> Outcome:
    """UPPER_CASE `fields`; answers the whole task without UF fields; emits ONTASKUPDATE (§6.3).

    Names the store does not know (camelCase, unknown system fields) are dropped silently.
    """
    task_id = _task_id(call)
    fields = call.named("fields")
    if not isinstance(fields, dict) or not fields:
        raise _internal("100", "Could not find value for parameter {fields}")
    if task_id not in call.portal.tasks:
        raise _internal("0", "Action on the task is not allowed")
    try:
        values = records.coerce_task_fields(call.portal, fields, strict=False)
        for name in READ_ONLY:
            values.pop(name, None)
    except records.BadField as exc:
        raise RestError(400, "ERROR_CORE", f"{exc}<br>") from exc
    task = records.update_task(call.portal, task_id, values)
    return Outcome({"task": taskview.classic(task, None, call.portal.config.user_tz)})
