"""Read whole collections (tasks, time entries) by ID windows, 50 windows per batch request.

Keyset paging by ID: a window ``(lo, lo + 50]`` can hold at most 50 rows, so one list command (50 rows
per page) reads it whole, and windows do not depend on each other — unlike "next page after the last
ID", they can share one batch. A batch of 50 windows covers 2,500 IDs in one HTTP request.
``task.elapseditem.getlist`` ignores ``start``; its page size goes in ``NAV_PARAMS`` (reference 7.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bitrix.batch import MAX_COMMANDS, Command
from bitrix.client import Client
from bitrix.normalize import as_int

WINDOW = 50
"""IDs per window: the list methods' fixed page size."""
WindowCommand = Callable[[int], Command]


def task_window(select: list[str], extra_filter: dict[str, Any] | None = None) -> WindowCommand:
    """tasks.task.list for IDs in (lo, lo + 50]; ``start=-1`` skips the portal's COUNT(*)."""
    def command(lo: int) -> Command:
        return Command("tasks.task.list", {"order": {"ID": "asc"},
                                           "filter": {">ID": lo, "<=ID": lo + WINDOW, **(extra_filter or {})},
                                           "select": select, "start": -1})
    return command


def entry_window(select: list[str]) -> WindowCommand:
    """task.elapseditem.getlist, all tasks, entry IDs in (lo, lo + 50]: positions ORDER, FILTER, SELECT, PARAMS."""
    def command(lo: int) -> Command:
        return Command("task.elapseditem.getlist", [{"ID": "asc"}, {">ID": lo, "<=ID": lo + WINDOW}, select,
                                                    {"NAV_PARAMS": {"nPageSize": WINDOW, "iNumPage": 1}}])
    return command


def highest_task_id(client: Client) -> int:
    rows = client.run(Command("tasks.task.list", {"order": {"ID": "desc"}, "select": ["ID"], "start": -1}))
    tasks = rows.get("tasks") if isinstance(rows, dict) else None
    return as_int(tasks[0].get("id")) if tasks else 0


def highest_entry_id(client: Client) -> int:
    rows = client.run(Command("task.elapseditem.getlist", [{"ID": "desc"}, {}, ["ID"],
                                                           {"NAV_PARAMS": {"nPageSize": 1, "iNumPage": 1}}]))
    rows = list(rows.values()) if isinstance(rows, dict) else rows or []
    return as_int(rows[0].get("ID")) if rows else 0


def scan(client: Client, window: WindowCommand, after: int, up_to: int) -> Iterator[tuple[int, list[Any]]]:
    """Yield ``(highest ID covered, rows)`` per batch request, windows from ``after`` to ``up_to``.

    Raises:
        BitrixError: a window failed; the caller's cursor must not move past it.
    """
    lo = after
    while lo < up_to:
        starts = list(range(lo, up_to, WINDOW))[:MAX_COMMANDS]
        answer = client.batch({str(start): window(start) for start in starts})
        if answer.errors:
            raise next(iter(answer.errors.values()))
        rows: list[Any] = []
        for start in starts:
            rows += _rows(answer.results.get(str(start)))
        lo = starts[-1] + WINDOW
        yield min(lo, up_to), rows


def _rows(result: Any) -> list[Any]:
    if isinstance(result, dict) and "tasks" in result:
        result = result["tasks"]
    if isinstance(result, dict):
        result = list(result.values())
    return [row for row in result or [] if isinstance(row, dict)]

