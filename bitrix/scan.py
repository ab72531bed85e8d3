"""Read whole collections (tasks, time entries) in ID order, at a cost that follows the rows, not the IDs.

Keyset paging: a page is "the next 50 rows after this ID" (``>ID``, ordered by ID), so IDs that start in the
millions, holes left by deleted tasks and imported blocks far apart cost nothing. Fixed ID windows would
cost a command per 50 IDs whether any row sits in them or not.

Pages after an ID depend on each other, so a batch request chains them: page *i* filters on
``>ID: $result[p{i-1}][...][49][id]``, the last row of the page before it, which the portal resolves
between the commands of one request. One request reads up to 50 pages, 2,500 rows.

The portal does not fail a reference whose path is missing: resolution stops at the last level that
exists (``CRestUtil::processBatchElement``; the sandbox does the same). After a page shorter than 50 rows,
every later command of the chain would run with that whole page, an array, as its ``>ID`` and read rows
that mean nothing. Two things keep that out:

- A chain carries only as many pages as there are rows. The first page of a listing is asked with a count
  (``start=0`` for ``tasks.task.list``; ``task.elapseditem.getlist`` counts on every page), and its
  ``total`` sizes what follows. That is one COUNT per listing; chained task pages use ``start=-1``.
- A chained page is used only if the reference it was built from resolves, in the answer we received, to
  the last ID of the page before it: then the portal filtered on exactly that ID. Otherwise the chain is
  cut there, and the next request starts again from the last ID used, written out.

Rows deleted between the count and the read end a chain early; rows added after it are left to the next
read. Every request either moves past at least one full page or ends the listing, so a listing never loops.
Offset pages after one ID (``start`` 0 to 2,450, or ``iNumPage`` 1 to 50) would need no reference, but a row
deleted while they run shifts the pages after it and a row goes unread (for the entries sweep, for good:
its cursor moves past it), and each of them pays for a COUNT. Measured on the sandbox, 10,000 tasks and
50,000 entries take 25 requests in every ID layout, where fixed ID windows would take from 26 (IDs from 1)
to 24,082 (one ID in a thousand); see ``docs/performance.md``.
``task.elapseditem.getlist`` ignores ``start``: its page goes in ``NAV_PARAMS`` (reference 7.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bitrix.batch import MAX_COMMANDS, BatchResult, Command
from bitrix.client import Client
from bitrix.errors import BitrixError
from bitrix.normalize import as_int

PAGE = 50
"""Rows per page: the list methods' fixed page size."""
Row = dict[str, Any]
Rows = list[Row]


@dataclass(frozen=True)
class Listing:
    """One list method read in ID order: how to ask for the page after an ID, and where its rows are."""

    method: str
    command: Callable[[int | str, bool], Command]
    """The page after an ID (or after a ``$result`` reference), counted or not."""
    rows_at: tuple[str, ...]
    """Where the rows sit in the method's result (``tasks`` for ``tasks.task.list``)."""
    id_key: str

    def rows(self, result: Any) -> Rows:
        found = _walk(result, self.rows_at)
        items = found.values() if isinstance(found, dict) else found if isinstance(found, list) else []
        return [row for row in items if isinstance(row, dict)]

    def reference(self, key: str) -> str:
        """The ID of the last row of a full page, as a batch reference to command ``key``."""
        return "$result" + "".join(f"[{part}]" for part in (key, *self.rows_at, str(PAGE - 1), self.id_key))

    def resolved(self, result: Any) -> Any:
        """What ``reference`` resolves to in this result (None where the path is missing)."""
        return _walk(result, (*self.rows_at, str(PAGE - 1), self.id_key))

    def id_of(self, row: Row) -> int:
        return as_int(row.get(self.id_key))


@dataclass(frozen=True)
class FirstPage:
    """A listing's first page, and how many rows matched its filter then (None: the portal did not count)."""

    rows: Rows
    total: int | None


def tasks_listing(select: list[str], extra_filter: dict[str, Any] | None = None) -> Listing:
    """``tasks.task.list`` by ID; only a counted page pays for the portal's COUNT(*)."""
    def command(after: int | str, counted: bool) -> Command:
        return Command("tasks.task.list", {"order": {"ID": "asc"}, "filter": {">ID": after, **(extra_filter or {})},
                                           "select": select, "start": 0 if counted else -1})
    return Listing("tasks.task.list", command, ("tasks",), "id")


def entries_listing(select: list[str]) -> Listing:
    """``task.elapseditem.getlist`` of all tasks by ID: positions ORDER, FILTER, SELECT, PARAMS.

    It counts every page whatever we ask, and returns its rows as a list (``fetchAll``), so the reference
    to a page's 50th row is ``[49][ID]``.
    """
    def command(after: int | str, counted: bool) -> Command:
        return Command("task.elapseditem.getlist", [{"ID": "asc"}, {">ID": after}, select,
                                                    {"NAV_PARAMS": {"nPageSize": PAGE, "iNumPage": 1}}])
    return Listing("task.elapseditem.getlist", command, (), "ID")


def first_pages(client: Client, wanted: Mapping[str, tuple[Listing, int]]) -> dict[str, FirstPage]:
    """The first page and count of each listing (rows after its ID), all in one request.

    Raises:
        BitrixError: a listing could not be read.
    """
    answer = client.batch({key: listing.command(after, True) for key, (listing, after) in wanted.items()})
    _raise_any(answer, list(wanted))
    return {key: FirstPage(_ordered(listing, listing.rows(answer.results.get(key)), after), answer.totals.get(key))
            for key, (listing, after) in wanted.items()}


def read(client: Client, listing: Listing, after: int, first: FirstPage | None = None) -> Iterator[Rows]:
    """Every row after ID ``after``, in ID order, one list per request.

    ``first`` is the first page when ``first_pages`` read it already (together with other listings).

    Raises:
        BitrixError: a page failed, or the portal answered rows out of order; the caller's cursor must
            not move.
    """
    page = first if first is not None else first_pages(client, {"first": (listing, after)})["first"]
    rows, full = page.rows, len(page.rows) == PAGE
    left = None if page.total is None else page.total - len(rows)
    yield rows
    while full and (left is None or left > 0):
        after = listing.id_of(rows[-1])
        pages = MAX_COMMANDS if left is None else min(MAX_COMMANDS, -(-left // PAGE))
        rows, full = _chain(client, listing, after, pages)
        if left is not None:
            left -= len(rows)
        yield rows


def _chain(client: Client, listing: Listing, after: int, pages: int) -> tuple[Rows, bool]:
    """Up to ``pages`` pages after ``after`` in one request; returns the rows that can be trusted and
    whether the last page used was full (more may follow)."""
    keys = [f"p{index}" for index in range(pages)]
    answer = client.batch({key: listing.command(after if index == 0 else listing.reference(keys[index - 1]), False)
                           for index, key in enumerate(keys)})
    rows: Rows = []
    for key in keys:
        _raise_any(answer, [key])
        page = _ordered(listing, listing.rows(answer.results.get(key)), after)
        rows += page
        if len(page) < PAGE:
            return rows, False
        after = listing.id_of(page[-1])
        if not _is_id(listing.resolved(answer.results.get(key)), after):
            return rows, True  # the next page was filtered on something else: go on from ``after`` next time
    return rows, True


def _ordered(listing: Listing, rows: Rows, after: int) -> Rows:
    """The rows, checked to be in ascending ID order after ``after`` as asked; a portal that ignored the
    filter or the order would otherwise make a listing skip rows or read them forever."""
    last = after
    for row in rows:
        row_id = listing.id_of(row)
        if row_id <= last:
            raise BitrixError(listing.method, "UNORDERED_PAGE", f"row {row_id} after {last} in a page by ID")
        last = row_id
    return rows


def _is_id(value: Any, expected: int) -> bool:
    """Whether a resolved reference is the ID ``expected`` (a number or numeric text, nothing else)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return False
    try:
        return int(value) == expected
    except ValueError:
        return False


def _raise_any(answer: BatchResult, keys: list[str]) -> None:
    for key in keys:
        if key in answer.errors:
            raise answer.errors[key]


def _walk(node: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` through objects and lists as the portal resolves a reference; None where it stops."""
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
