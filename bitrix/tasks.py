"""Tasks (``tasks.task.*``, classic): commands and the task as read off the wire (camelCase)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bitrix.batch import Command
from bitrix.normalize import as_datetime, as_int

LIST_METHOD = "tasks.task.list"

TASK_SELECT = ["ID", "TITLE", "STATUS", "GROUP_ID", "RESPONSIBLE_ID", "CREATED_BY", "CREATED_DATE",
               "CHANGED_DATE", "DEADLINE", "CLOSED_DATE"]
TIME_SPENT = "TIME_SPENT_IN_LOGS"
"""Seconds logged on the task: the server sums its time entries at read time (reference 6.2)."""
STATUS_COMPLETED = 5


@dataclass(frozen=True)
class Task:
    id: int
    status: int
    group_id: int
    responsible_id: int
    created_by: int
    created_date: dt.datetime | None = None
    changed_date: dt.datetime | None = None
    deadline: dt.datetime | None = None
    userfields: dict[str, Any] = field(default_factory=dict)
    time_spent: int | None = None
    """Seconds logged in its time entries; None when not read (not selected, or not printed)."""


def select(userfields: tuple[str, ...] = (), time_spent: bool = False) -> list[str]:
    """The fields we read: ours, the rules' user fields, and the logged time when entries matter."""
    return [*TASK_SELECT, *((TIME_SPENT,) if time_spent else ()), *userfields]


def list_by_ids(task_ids: list[int], userfields: tuple[str, ...] = (), time_spent: bool = False) -> Command:
    """Up to 50 tasks in one command: ``tasks.task.list`` filtered by ID, a narrow select, no COUNT(*)."""
    return Command(LIST_METHOD, {"order": {"ID": "asc"}, "filter": {"ID": task_ids},
                                       "select": select(userfields, time_spent), "start": -1})


def tasks_from_list(result: Any) -> list[Task]:
    rows = result.get("tasks") if isinstance(result, dict) else None
    return [task_from_row(row) for row in rows or [] if isinstance(row, dict)]


def get(task_id: int, userfields: tuple[str, ...] = ()) -> Command:
    """Read one task; user fields come back only when named in ``select``."""
    return Command("tasks.task.get", {"taskId": task_id, "select": [*TASK_SELECT, *userfields]})


def set_deadline(task_id: int, deadline_iso: str) -> Command:
    """REST 3.0 deadline write; the classic form goes along as the fallback for portals without v3."""
    return Command("tasks.task.update", {"id": task_id, "fields": {"deadline": deadline_iso}}, v3=True,
                   fallback=set_fields(task_id, {"DEADLINE": deadline_iso}))


def set_fields(task_id: int, fields: dict[str, Any]) -> Command:
    """Classic update; field names UPPER_CASE (``DEADLINE``, ``UF_...``)."""
    return Command("tasks.task.update", {"taskId": task_id, "fields": fields})


def camel_case(name: str) -> str:
    """How classic task methods print a field name: ``UF_PROJECT_CODE`` -> ``ufProjectCode``."""
    head, *rest = name.lower().split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def task_from_wire(result: Any) -> Task | None:
    """The task inside a ``tasks.task.get`` result, or None when the portal cannot see it (``[]``)."""
    data = result.get("task") if isinstance(result, dict) else None
    return task_from_row(data) if isinstance(data, dict) else None


def task_from_row(data: dict[str, Any]) -> Task:
    """One task object as ``tasks.task.get`` and ``tasks.task.list`` print it (camelCase, strings)."""
    return Task(id=as_int(data.get("id")), status=as_int(data.get("status")),
                group_id=as_int(data.get("groupId")), responsible_id=as_int(data.get("responsibleId")),
                created_by=as_int(data.get("createdBy")), created_date=as_datetime(data.get("createdDate")),
                changed_date=as_datetime(data.get("changedDate")), deadline=as_datetime(data.get("deadline")),
                userfields={k: v for k, v in data.items() if k.startswith("uf")},
                time_spent=_time_spent(data))


def _time_spent(data: dict[str, Any]) -> int | None:
    """Null means no entries (the server's SUM found no row); absent or unreadable means unknown."""
    if "timeSpentInLogs" not in data:
        return None
    try:
        return as_int(data["timeSpentInLogs"])
    except (TypeError, ValueError):
        return None
