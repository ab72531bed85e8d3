"""What an evaluation reads: tasks with their logged time, and time entries only of the tasks that can
hold one over a cap (no entry exceeds its task's TIME_SPENT_IN_LOGS, the server's SUM of them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from flask import Flask

from bitrix.tasks import task_from_row
from policies import parse_policy_rules as parse_rules
from policies.base import Needs
from sandbox.server import RunningSandbox
from tests.helpers import MANIFEST, work_requests
from workers import evaluation
from workers.evaluation import Trigger, evaluate_tasks, needs_of

CAP_RULES = """
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
TWO_CAPS = CAP_RULES + """
  - name: strict-cap
    policy: elapsed_cap
    params: {max_seconds: 7200}
  - name: deadline
    policy: deadline
    params: {set_if_missing: {hours: 8}}
"""
BIG_PASS = 26
"""Tasks of a pass that, one per read group, make reading in two steps cost no more requests."""


def call(server: RunningSandbox, method: str, body: dict[str, Any]) -> Any:
    return requests.post(server.webhook_url + method, json=body, timeout=5).json()["result"]


class TestLoggedTime:
    def test_printed_when_selected(self, sandbox: Any, sandbox_server: RunningSandbox) -> None:
        """``TIME_SPENT_IN_LOGS`` is the sum of the task's entries as a string, null without entries."""
        logged, idle = sandbox.add_task(TITLE="logged"), sandbox.add_task(TITLE="idle")
        sandbox.add_entry(logged, 20000)
        sandbox.add_entry(logged, 15000)
        select = ["ID", "TIME_SPENT_IN_LOGS"]
        listed = call(sandbox_server, "tasks.task.list", {"filter": {"ID": [logged, idle]}, "select": select})
        assert {task["id"]: task["timeSpentInLogs"] for task in listed["tasks"]} == {str(logged): "35000",
                                                                                     str(idle): None}
        got = call(sandbox_server, "tasks.task.get", {"taskId": logged, "select": select})
        assert got["task"]["timeSpentInLogs"] == "35000"
        plain = call(sandbox_server, "tasks.task.list", {"filter": {"ID": [logged]}, "select": ["ID"]})
        assert "timeSpentInLogs" not in plain["tasks"][0]

    @pytest.mark.parametrize(("row", "expected"), [
        ({}, None), ({"timeSpentInLogs": None}, 0), ({"timeSpentInLogs": "3600"}, 3600),
        ({"timeSpentInLogs": 3600}, 3600), ({"timeSpentInLogs": "a lot"}, None),
    ])
    def test_read_off_the_wire(self, row: dict[str, Any], expected: int | None) -> None:
        """Absent or unreadable is unknown (entries get read); null is no entries."""
        assert task_from_row({"id": "1", **row}).time_spent == expected


class TestNeeds:
    def test_the_lowest_cap_decides(self) -> None:
        needs = needs_of(parse_rules(yaml.safe_load(TWO_CAPS)))
        assert (needs.entries, needs.entries_over) == (True, 7200)

    def test_reading_all_entries_wins(self) -> None:
        assert (Needs(entries=True, entries_over=7200) | Needs(entries=True)).entries_over is None
        assert (Needs(entries=True, entries_over=7200) | Needs(userfields=("UF_X",))).entries_over == 7200

    @pytest.mark.parametrize(("needs", "time_spent", "expected"), [
        (Needs(entries=True, entries_over=7200), None, True),
        (Needs(entries=True, entries_over=7200), 7200, False),
        (Needs(entries=True, entries_over=7200), 7201, True),
        (Needs(entries=True), 0, True),
        (Needs(), 99999, False),
    ])
    def test_whose_entries_are_read(self, needs: Needs, time_spent: int | None, expected: bool) -> None:
        task = task_from_row({"id": "1"} if time_spent is None else {"id": "1", "timeSpentInLogs": time_spent})
        assert needs.entries_of(task) is expected


class TestTwoStepRead:
    @pytest.fixture
    def one_task_per_group(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """26 tasks then make 26 read groups, as 1,300 would: together 2 requests, in two steps 1 + 1."""
        monkeypatch.setattr(evaluation, "READ_GROUP", 1)

    @pytest.mark.usefixtures("one_task_per_group")
    def test_entries_only_of_tasks_over_the_cap(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Only the tasks that logged more than the cap get their entries read; the cap applies as ever."""
        app = make_app(CAP_RULES)
        ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(BIG_PASS)]
        for task_id in ids:
            sandbox.add_entry(task_id, 3600)
        long_entry = sandbox.add_entry(ids[3], 40000)
        halves = [sandbox.add_entry(ids[7], 20000), sandbox.add_entry(ids[7], 20000)]  # over in all, not each
        sandbox.clear_requests()
        decisions = evaluate_tasks(app.extensions["taskwarden"], ids, Trigger("event", "ONTASKUPDATE"))
        log = work_requests(sandbox)
        assert [sorted({c["method"] for c in r["commands"]}) for r in log] == [
            ["tasks.task.list"], ["task.elapseditem.getlist"], ["task.elapseditem.update"]]
        assert len(log[0]["commands"]) == BIG_PASS
        assert sorted(c["params"][1]["TASK_ID"][0] for c in log[1]["commands"]) == sorted([str(ids[3]), str(ids[7])])
        assert [(d.task_id, d.outcome) for d in decisions] == [(ids[3], "changed")]
        assert int(sandbox.entry(long_entry)["SECONDS"]) == 28800
        assert [int(sandbox.entry(half)["SECONDS"]) for half in halves] == [20000, 20000]

    @pytest.mark.usefixtures("one_task_per_group")
    def test_a_failed_entry_read_fails_only_its_tasks(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """An entry page read in the second step that fails is the error of that page's tasks, not of the
        tasks at the same place in the first step."""
        app = make_app(CAP_RULES)
        ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(BIG_PASS)]
        first, second = ids[5], ids[9]
        entries = {first: sandbox.add_entry(first, 40000), second: sandbox.add_entry(second, 40000)}
        sandbox.fault("task.elapseditem.getlist", status=403, error="ACCESS_DENIED", in_batch=True, times=1)
        decisions = evaluate_tasks(app.extensions["taskwarden"], ids, Trigger("event", "ONTASKUPDATE"))
        assert sorted((d.task_id, d.outcome) for d in decisions) == [(first, "not_allowed"), (second, "changed")]
        assert [int(sandbox.entry(entries[t])["SECONDS"]) for t in (first, second)] == [40000, 28800]

    @pytest.mark.usefixtures("one_task_per_group")
    def test_a_task_with_many_entries_gets_every_page(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Entries read in the second step page on like the others: 60 entries are two pages of 50."""
        app = make_app(CAP_RULES)
        ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(BIG_PASS)]
        for _ in range(59):
            sandbox.add_entry(ids[4], 600)
        last = sandbox.add_entry(ids[4], 30000)  # the 60th, on the second page
        sandbox.clear_requests()
        decisions = evaluate_tasks(app.extensions["taskwarden"], ids, Trigger("event", "ONTASKUPDATE"))
        pages = [c["params"][3]["NAV_PARAMS"]["iNumPage"] for r in sandbox.requests() for c in r["commands"]
                 if c["method"] == "task.elapseditem.getlist"]
        assert sorted(pages) == ["1", "2"]
        assert [(d.task_id, d.entity, d.outcome) for d in decisions] == [(ids[4], f"entry:{last}", "changed")]


class TestSweepReads:
    def test_tasks_sweep_reads_entries_of_tasks_over_the_cap_only(self, make_app: Callable[..., Flask],
                                                                  sandbox: Any) -> None:
        """A tasks sweep lists tasks with their logged time and reads the entries of those over the cap."""
        from workers.sweeps import run_sweep

        app = make_app(CAP_RULES)
        ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(5)]
        for task_id in ids:
            sandbox.add_entry(task_id, 3600)
        long_entry = sandbox.add_entry(ids[2], 40000)
        sandbox.clear_requests()
        stats = run_sweep(app.extensions["taskwarden"], "tasks")
        entry_reads = [c for r in sandbox.requests() for c in r.get("commands") or []
                       if c["method"] == "task.elapseditem.getlist"]
        assert [c["params"][1]["TASK_ID"] for c in entry_reads] == [[str(ids[2])]]
        assert (stats.tasks_seen, stats.changed) == (5, 1)
        assert int(sandbox.entry(long_entry)["SECONDS"]) == 28800


class TestTaskFilterFromTheManifest:
    """``task.elapseditem.getlist`` by TASK_ID: allowed by the server's manifest, absent from the docs' table.
    The portal's own manifest decides, once a day; without the filter, entries are read task by task."""

    def test_filtered_read_where_the_manifest_allows_it(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        app = make_app(CAP_RULES)
        first, second = sandbox.add_task(TITLE="a"), sandbox.add_task(TITLE="b")
        entry = sandbox.add_entry(first, 40000)
        sandbox.add_entry(second, 100)
        rt = app.extensions["taskwarden"]
        evaluate_tasks(rt, [first, second], Trigger("event", "ONTASKUPDATE"))
        evaluate_tasks(rt, [first, second], Trigger("event", "ONTASKUPDATE"))
        assert [r["method"] for r in sandbox.requests()].count(MANIFEST) == 1  # remembered, not asked again
        reads = [c for r in work_requests(sandbox) for c in r["commands"] if c["method"] == "task.elapseditem.getlist"]
        assert all(c["params"][1]["TASK_ID"] for c in reads) and len(reads) == 2  # one command per pass
        assert sandbox.entry(entry)["SECONDS"] == 28800

    def test_per_task_reads_where_it_does_not(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        sandbox.configure(elapsed_task_filter=False)
        app = make_app(CAP_RULES)
        first, second = sandbox.add_task(TITLE="a"), sandbox.add_task(TITLE="b")
        entry = sandbox.add_entry(first, 40000)
        kept = sandbox.add_entry(second, 100)
        decisions = evaluate_tasks(app.extensions["taskwarden"], [first, second], Trigger("event", "ONTASKUPDATE"))
        reads = [c for r in work_requests(sandbox) for c in r["commands"] if c["method"] == "task.elapseditem.getlist"]
        assert sorted(c["params"][0] for c in reads) == sorted([str(first), str(second)])  # the task id, by position
        assert [(d.task_id, d.outcome) for d in decisions] == [(first, "changed")]
        assert (sandbox.entry(entry)["SECONDS"], sandbox.entry(kept)["SECONDS"]) == (28800, 100)
