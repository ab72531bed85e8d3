"""REST 3.0 `tasks.task.get / update` under `/rest/api/` (reference §2.5, §6.4)."""

from __future__ import annotations

from typing import Any

from sandbox import dates, records, taskview
from sandbox.calls import V3, Call, Outcome, register
from sandbox.errors import V3Error

EDITABLE = {"title": "TITLE", "deadline": "DEADLINE", "responsibleId": "RESPONSIBLE_ID", "groupId": "GROUP_ID",
            "status": "STATUS", "description": None}
KNOWN = set(taskview.V3_NAMES.values()) | set(EDITABLE)
WORD_STATUS = {word: number for number, word in taskview.STATUS_WORDS.items()}


def _validation(field: str, message: str) -> V3Error:
    return V3Error(400, "VALIDATION_REQUESTVALIDATIONEXCEPTION", "Request validation failed",
                   [{"field": field, "message": message}])


def _id(call: Call) -> int:
    raw = call.params.get("id")
    if raw is None:
        raise _validation("id", "The field `id` is required")
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _validation("id", "The field `id` must be of type int")
    return raw


@register(V3, "tasks.task.get")
def get(call: Call) -> Outcome:
    """`{"item": {...}}`; a missing task is ENTITYNOTFOUNDEXCEPTION (400)."""
    task_id = _id(call)
    select = call.params.get("select")
    task = call.portal.tasks.get(task_id)
    if task is None:
        raise V3Error(400, "ENTITYNOTFOUNDEXCEPTION", f"Entity with id {task_id} not found")
    names = [str(name) for name in select] if isinstance(select, list) and select else None
    return Outcome({"item": taskview.v3(task, names, call.portal.config.user_tz)})


@register(V3, "tasks.task.update", write=True)
def update(call: Call) -> Outcome:
    """camelCase `fields`; non-editable fields fail validation; missing task is 403 (§6.4)."""
    task_id = _id(call)
    fields = call.params.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise _validation("fields", "The field `fields` is required")
    for key in fields:
        if key not in KNOWN:
            raise V3Error(400, "UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown property `{key}` of TaskDto")
        if key not in EDITABLE:
            raise _validation(key, f"The field `{key}` requires the presence of the `Editable` attribute")
    if task_id not in call.portal.tasks:
        raise V3Error(403, "ACCESSDENIEDEXCEPTION", "Access denied")
    records.update_task(call.portal, task_id, _stored(call, fields))
    return Outcome({"result": True})


def _stored(call: Call, fields: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in fields.items():
        name = EDITABLE[key]
        if name is None:
            continue
        try:
            if name == "DEADLINE":
                values[name] = dates.parse_optional(value, call.portal.config.server_tz)
            elif name == "STATUS":
                values[name] = WORD_STATUS[value] if isinstance(value, str) else int(value)
            elif name == "TITLE":
                values[name] = str(value)
            else:
                values[name] = int(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise _validation(key, f"The field `{key}` has an invalid value") from exc
    return values
