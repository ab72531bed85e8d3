"""Time entries (``task.elapseditem.*``): positional commands and entries read off the wire.

These old methods ignore parameter names and bind by position (reference 7.1), so every command is a
list in the manifest's order, with empty placeholders where a later position is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitrix.batch import Command
from bitrix.normalize import as_int, as_str

LIST_METHOD = "task.elapseditem.getlist"
ENTRY_SELECT = ["ID", "TASK_ID", "USER_ID", "SECONDS", "COMMENT_TEXT", "CREATED_DATE"]
PAGE_SIZE = 50
"""The most rows one getlist page returns."""


@dataclass(frozen=True)
class TimeEntry:
    id: int
    task_id: int
    user_id: int
    seconds: int
    comment: str


def entry_from_wire(data: dict[str, Any]) -> TimeEntry:
    """One entry as returned by getlist/get (strings on current servers, ints accepted too)."""
    return TimeEntry(id=as_int(data.get("ID")), task_id=as_int(data.get("TASK_ID")),
                     user_id=as_int(data.get("USER_ID")), seconds=as_int(data.get("SECONDS")),
                     comment=as_str(data.get("COMMENT_TEXT")))


def entries_from_wire(result: Any) -> list[TimeEntry]:
    rows = result.values() if isinstance(result, dict) else result or []
    return [entry_from_wire(row) for row in rows if isinstance(row, dict)]


def list_for_task(task_id: int) -> Command:
    """All entries of one task: with a task id and no NAV_PARAMS the portal returns them all at once."""
    return Command(LIST_METHOD, [task_id, {"ID": "asc"}, {}, ENTRY_SELECT])


def list_for_tasks(task_ids: list[int], page: int) -> Command:
    """Entries of several tasks, one page of 50 (positions ORDER, FILTER, SELECT, PARAMS; no task id)."""
    return Command(LIST_METHOD, [{"ID": "asc"}, {"TASK_ID": task_ids}, ENTRY_SELECT,
                                                {"NAV_PARAMS": {"nPageSize": PAGE_SIZE, "iNumPage": page}}])


def get(task_id: int, entry_id: int) -> Command:
    """One entry, positions TASKID and ITEMID."""
    return Command("task.elapseditem.get", [task_id, entry_id])


def manifest() -> Command:
    return Command("task.elapseditem.getmanifest", [])


FILTERABLE_KEY = "REST: filterable elapseditem data fields"


def task_filter_allowed(manifest_result: Any) -> bool:
    """Whether the manifest lists TASK_ID among getlist's filterable fields. The server warns that the
    manifest's format may change: anything unreadable counts as no, and the reads go task by task."""
    fields = manifest_result.get(FILTERABLE_KEY) if isinstance(manifest_result, dict) else None
    return isinstance(fields, list) and "TASK_ID" in fields


UPDATE_METHOD = "task.elapseditem.update"


def update(task_id: int, entry_id: int, seconds: int, comment: str) -> Command:
    """Set an entry's seconds; COMMENT_TEXT is always sent since newer servers may wipe it otherwise."""
    return Command(UPDATE_METHOD, [task_id, entry_id, {"SECONDS": seconds, "COMMENT_TEXT": comment}])


def delete(task_id: int, entry_id: int) -> Command:
    return Command("task.elapseditem.delete", [task_id, entry_id])
