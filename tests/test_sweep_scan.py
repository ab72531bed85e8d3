"""Reading a collection in ID order with chained pages (``bitrix.scan``), against the sandbox over HTTP.

A chained page filters on ``$result[previous page][49][ID]``. When the page before it is short, that path is
missing, and the portal (like the sandbox) substitutes what it found on the way: the page itself. These
tests make that happen and check that nothing such a page returns is used, and that a listing ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from bitrix import elapsed, scan

CAP_ONLY = """
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
LISTING = scan.entries_listing(elapsed.ENTRY_SELECT)


def ids(pages: list[scan.Rows]) -> list[int]:
    return [LISTING.id_of(row) for page in pages for row in page]


class TestChain:
    def test_count_sizes_the_chain(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """600 entries: a counted first page, then one request with exactly 11 chained pages."""
        sandbox.reset(seed="sparse:100:600")
        client = make_app(CAP_ONLY).extensions["taskwarden"].client
        sandbox.clear_requests()
        pages = list(scan.read(client, LISTING, 0))
        log = sandbox.requests()
        assert ids(pages) == [entry["ID"] for entry in sandbox.entries()]
        assert [len(request["commands"]) for request in log] == [1, 11]

    def test_rows_deleted_after_the_count_end_the_chain_without_garbage(
            self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Entries deleted between the count and the chain: the chain's last pages reference a short page,
        the portal resolves that to the page itself, and those pages are not used. The rows read are
        exactly the entries that exist, each once, in order."""
        sandbox.reset(seed="offset:100:600")
        rt = make_app(CAP_ONLY).extensions["taskwarden"]
        doomed = sandbox.entries()[-120:]
        sandbox.clear_requests()
        pages = scan.read(rt.client, LISTING, 0)
        first = next(pages)
        deleted = rt.client.batch({f"d{e['ID']}": elapsed.delete(e["TASK_ID"], e["ID"]) for e in doomed})
        assert not deleted.errors
        rest = list(pages)
        assert ids([first, *rest]) == [entry["ID"] for entry in sandbox.entries()]
        chain = [request for request in sandbox.requests() if request["method"] == "batch"][-1]
        assert len(chain["commands"]) == 11  # sized for 550 more rows; 430 were left
        after_short = chain["commands"][9]["params"][1][">ID"]
        assert isinstance(after_short, list)  # the short page itself stood in for the missing ID

    def test_rows_added_after_the_count_wait_for_the_next_read(self, make_app: Callable[..., Flask],
                                                               sandbox: Any) -> None:
        """New entries after the count are not chased: the read ends at the count, the next one finds them."""
        sandbox.reset(seed="clustered:100:600")
        client = make_app(CAP_ONLY).extensions["taskwarden"].client
        pages = scan.read(client, LISTING, 0)
        first = next(pages)
        task_id = first[0]["TASK_ID"]
        added = [sandbox.add_entry(int(task_id), 60) for _ in range(70)]
        rest = list(pages)
        read = ids([first, *rest])
        assert len(read) == 600 and len(rest) == 1
        assert ids(list(scan.read(client, LISTING, read[-1]))) == [i for i in added if i > read[-1]]

    def test_empty_listing_is_one_request(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        client = make_app(CAP_ONLY).extensions["taskwarden"].client
        sandbox.clear_requests()
        assert list(scan.read(client, LISTING, 0)) == [[]]
        assert len(sandbox.requests()) == 1


class TestReference:
    def test_resolves_where_the_portal_would(self) -> None:
        """The check a chained page must pass: its reference resolves, in the answer, to the last ID read."""
        page = [{"ID": str(100 + i)} for i in range(50)]
        assert LISTING.reference("p3") == "$result[p3][49][ID]"
        assert LISTING.resolved(page) == "149"
        assert LISTING.resolved(page[:49]) is None
        assert LISTING.resolved({str(100 + i): row for i, row in enumerate(page)}) is None  # keyed by ID
        tasks = scan.tasks_listing(["ID"])
        assert tasks.reference("p0") == "$result[p0][tasks][49][id]"
        assert tasks.resolved({"tasks": [{"id": str(i)} for i in range(50)]}) == "49"
