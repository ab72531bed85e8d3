"""Creating and changing tasks, time entries and userfield definitions in the portal's store.

Shared by the REST methods, the control API and the seeds. Callers hold `portal.lock`.
Task changes emit ONTASKADD / ONTASKUPDATE (`app_events`); time entries and userfield definitions emit nothing,
as on a real portal (reference §1.6).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sandbox import app_events, dates
from sandbox.store import Portal

TASK_INT_FIELDS = ("ID", "STATUS", "GROUP_ID", "RESPONSIBLE_ID", "CREATED_BY")
TASK_DATE_FIELDS = ("CREATED_DATE", "CHANGED_DATE", "DEADLINE", "CLOSED_DATE")
TASK_FIELDS = ("ID", "TITLE", "STATUS", "GROUP_ID", "RESPONSIBLE_ID", "CREATED_BY", *TASK_DATE_FIELDS)
STATUS_COMPLETED = 5


class BadField(ValueError):
    """A field name or value the store cannot accept."""


def php_int(value: Any) -> int:
    """PHP `(int)` cast: leading digits of a string, 0 for anything unreadable."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    match = re.match(r"\s*([+-]?\d+)", str(value) if value is not None else "")
    return int(match.group(1)) if match else 0


def minutes_of(seconds: int) -> int:
    """MINUTES is derived: PHP `round(SECONDS / 60)`, halves away from zero (§7.3)."""
    return int(seconds / 60 + 0.5) if seconds >= 0 else -int(-seconds / 60 + 0.5)


def coerce_task_fields(portal: Portal, fields: dict[str, Any], strict: bool) -> dict[str, Any]:
    """Task fields with native types; unknown names raise when `strict`, else are dropped."""
    out: dict[str, Any] = {}
    for raw_name, value in fields.items():
        name = str(raw_name).lstrip("~")
        try:
            if name in TASK_INT_FIELDS:
                out[name] = int(value)
            elif name in TASK_DATE_FIELDS:
                out[name] = dates.parse_optional(value, portal.config.server_tz)
            elif name == "TITLE":
                out[name] = str(value)
            elif name.startswith("UF_"):
                out[name] = _uf_value(portal, name, value)
            elif strict:
                raise BadField(f"unknown task field {name!r} (use UPPER_CASE Bitrix names)")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BadField):
                raise
            raise BadField(f"bad value for {name}: {value!r}") from exc
    return out


def _uf_value(portal: Portal, name: str, value: Any) -> Any:
    definition = userfield_by_name(portal, name)
    if definition is not None and definition["USER_TYPE_ID"] == "datetime":
        return dates.parse_optional(value, portal.config.server_tz)
    return value


def add_task(portal: Portal, fields: dict[str, Any], emit: bool = True, strict: bool = True) -> int:
    """Store a new task; defaults: pending, no group, the webhook user as creator and responsible."""
    values = coerce_task_fields(portal, fields, strict)
    task_id = values.pop("ID", None) or portal.new_id("task")
    if task_id in portal.tasks:
        raise BadField(f"task {task_id} already exists")
    portal.next_ids["task"] = max(portal.next_ids.get("task", 1), task_id + 1)
    created = values.get("CREATED_DATE") or dates.now()
    task: dict[str, Any] = {
        "ID": task_id, "TITLE": "", "STATUS": 2, "GROUP_ID": 0,
        "RESPONSIBLE_ID": portal.config.user_id, "CREATED_BY": portal.config.user_id,
        "CREATED_DATE": created, "CHANGED_DATE": created, "DEADLINE": None, "CLOSED_DATE": None,
    }
    task.update(values)
    if task["STATUS"] == STATUS_COMPLETED and task["CLOSED_DATE"] is None:
        task["CLOSED_DATE"] = task["CHANGED_DATE"]
    portal.tasks[task_id] = task
    if emit:
        app_events.task_changed(portal, "ONTASKADD", task_id)
    return task_id


def update_task(portal: Portal, task_id: int, values: dict[str, Any], emit: bool = True) -> dict[str, Any]:
    """Apply coerced `values` as a user edit: CHANGED_DATE moves, ONTASKUPDATE is sent."""
    task = portal.tasks[task_id]
    values = {name: value for name, value in values.items() if name != "ID"}
    old_status = task["STATUS"]
    task.update(values)
    task["CHANGED_DATE"] = values.get("CHANGED_DATE") or dates.now()
    if task["STATUS"] != old_status and "CLOSED_DATE" not in values:
        task["CLOSED_DATE"] = task["CHANGED_DATE"] if task["STATUS"] == STATUS_COMPLETED else None
    if emit:
        app_events.task_changed(portal, "ONTASKUPDATE", task_id)
    return task


def add_entry(portal: Portal, task_id: int, fields: dict[str, Any]) -> int:
    """Store a time entry; SOURCE is forced to 2 (manual) like the server does (§7.3)."""
    if task_id not in portal.tasks:
        raise BadField(f"task {task_id} does not exist")
    seconds = php_int(fields["SECONDS"])
    created = dates.parse_optional(fields.get("CREATED_DATE"), portal.config.server_tz) or dates.now()
    start = dates.parse_optional(fields.get("DATE_START"), portal.config.server_tz) or created
    stop = dates.parse_optional(fields.get("DATE_STOP"), portal.config.server_tz)
    entry_id = portal.new_id("entry")
    portal.entries[entry_id] = {
        "ID": entry_id, "TASK_ID": task_id,
        "USER_ID": php_int(fields.get("USER_ID")) or portal.config.user_id,
        "COMMENT_TEXT": "" if fields.get("COMMENT_TEXT") is None else str(fields["COMMENT_TEXT"]),
        "SECONDS": seconds, "SOURCE": 2, "CREATED_DATE": created,
        "DATE_START": start, "DATE_STOP": stop or start + timedelta(seconds=max(seconds, 0)),
    }
    return entry_id


def time_spent(portal: Portal, task_ids: set[int]) -> dict[int, int]:
    """Seconds logged per task, as the server computes ``TIME_SPENT_IN_LOGS``: a SUM over the task's
    entries at read time (no row, so null, for a task without entries)."""
    spent: dict[int, int] = {}
    for entry in portal.entries.values():
        if entry["TASK_ID"] in task_ids:
            spent[entry["TASK_ID"]] = spent.get(entry["TASK_ID"], 0) + entry["SECONDS"]
    return spent


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored entry with its derived MINUTES, in the field order of the public map."""
    view = dict(entry)
    view["MINUTES"] = minutes_of(entry["SECONDS"])
    order = ("ID", "TASK_ID", "USER_ID", "COMMENT_TEXT", "SECONDS", "MINUTES", "SOURCE",
             "CREATED_DATE", "DATE_START", "DATE_STOP")
    return {name: view[name] for name in order}


def userfield_by_name(portal: Portal, name: str) -> dict[str, Any] | None:
    """The definition whose FIELD_NAME is `name`, if any."""
    for definition in portal.userfields.values():
        if definition["FIELD_NAME"] == name:
            return definition
    return None
