"""End to end over real HTTP: the sandbox sends an event to the web app, a worker caps the entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask

from .helpers import FORM, TEST_ADMIN_TOKEN, event_body, poll, run_worker, work_requests

DELETE_RULES = """
rules:
  - name: drop-long-entries
    policy: elapsed_cap
    params: {max_seconds: 28800, action: delete}
"""
AUDIT_RULES = """
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    mode: audit
    params: {max_seconds: 28800, note: " (capped at 8h)"}
"""


def deliver_edit(sandbox: Any, task_id: int) -> None:
    """Edit the task as a user would; wait until the sandbox delivered its ONTASKUPDATE to us."""
    before = len(sandbox.events())
    sandbox.update_task(task_id, TITLE=f"edited {before}")
    delivered = poll(lambda: [e for e in sandbox.events()[before:] if e["outcome"] != "pending"],
                     "the ONTASKUPDATE delivery")
    assert (delivered[-1]["event"], delivered[-1]["status"]) == ("ONTASKUPDATE", 200), delivered[-1]


@pytest.fixture
def wired(sandbox: Any, live_app: str) -> str:
    """Point the sandbox's outbound events at the running web app."""
    sandbox.configure(handler_url=f"{live_app}/bitrix24/events")
    return live_app


class TestCapLoop:
    def test_long_entry_clamped_short_entry_untouched(self, app: Flask, sandbox: Any, wired: str) -> None:
        """36,000 s 'client call' becomes 28,800 s 'client call (capped at 8h)'; 3,600 s stays as it is."""
        task_id = sandbox.add_task(TITLE="Quarterly report")
        long_id = sandbox.add_entry(task_id, 36000, "client call")
        short_id = sandbox.add_entry(task_id, 3600, "standup")
        deliver_edit(sandbox, task_id)
        run_worker(app)
        assert (sandbox.entry(long_id)["SECONDS"], sandbox.entry(long_id)["COMMENT_TEXT"]) == (
            28800, "client call (capped at 8h)")
        assert (sandbox.entry(short_id)["SECONDS"], sandbox.entry(short_id)["COMMENT_TEXT"]) == (3600, "standup")
        audit = requests.get(f"{wired}/audit", params={"task": task_id},
                             headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=5).json()
        [decision] = audit["decisions"]
        assert decision | {"time": None} == decision | {
            "rule": "cap-time-entries", "policy": "elapsed_cap", "mode": "enforce", "task_id": task_id,
            "entity": f"entry:{long_id}", "before": 36000, "after": 28800, "outcome": "changed", "cause": "event",
            "time": None}
        # The task's ONTASKADD queued the evaluation; the edit's ONTASKUPDATE coalesced onto it.
        assert decision["event_id"].startswith(f"ONTASKADD:{task_id}:")

    def test_one_read_batch_and_one_write_batch(self, app: Flask, sandbox: Any, wired: str) -> None:
        """An evaluation reads the task and its entries in one batch request and writes in one more."""
        task_id = sandbox.add_task(TITLE="t")
        sandbox.add_entry(task_id, 40000, "a")
        sandbox.add_entry(task_id, 50000, "b")
        deliver_edit(sandbox, task_id)
        sandbox.clear_requests()
        run_worker(app)
        log = work_requests(sandbox)
        assert [r["method"] for r in log] == ["batch", "batch"]
        assert sorted(c["method"] for c in log[0]["commands"]) == ["task.elapseditem.getlist", "tasks.task.list"]
        assert [c["method"] for c in log[1]["commands"]] == ["task.elapseditem.update"] * 2

    def test_second_evaluation_writes_nothing(self, app: Flask, sandbox: Any, wired: str) -> None:
        """Evaluating a compliant task reads once and writes nothing; the note is not appended again."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 36000, "client call")
        deliver_edit(sandbox, task_id)
        run_worker(app)
        sandbox.clear_requests()
        deliver_edit(sandbox, task_id)
        run_worker(app)
        log = sandbox.requests()
        assert [r["method"] for r in log] == ["batch"]
        assert all(c["method"] != "task.elapseditem.update" for c in log[0]["commands"])
        assert sandbox.entry(entry_id)["COMMENT_TEXT"] == "client call (capped at 8h)"

    def test_delete_removes_only_over_cap(self, make_app: Callable[..., Flask], sandbox: Any,
                                          live_app: str) -> None:
        """With action delete, the over-cap entry is gone and the other remains."""
        app = make_app(DELETE_RULES)
        sandbox.configure(handler_url=None)
        task_id = sandbox.add_task(TITLE="t")
        long_id = sandbox.add_entry(task_id, 30000, "too long")
        short_id = sandbox.add_entry(task_id, 600, "fine")
        post_event(app, task_id)
        run_worker(app)
        assert sandbox.entry(long_id) is None
        assert sandbox.entry(short_id)["SECONDS"] == 600

    def test_audit_mode_changes_nothing(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A rule in audit mode records would_change with the value it would write, and writes nothing."""
        app = make_app(AUDIT_RULES)
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 36000, "client call")
        post_event(app, task_id)
        run_worker(app)
        assert sandbox.entry(entry_id)["SECONDS"] == 36000
        decisions = app.test_client().get("/audit", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).get_json()
        assert [(d["outcome"], d["after"]) for d in decisions["decisions"]] == [("would_change", 28800)]

    def test_write_refused_is_recorded_not_retried(self, app: Flask, sandbox: Any) -> None:
        """A write the portal refuses (access) is audited as not_allowed and the job still completes."""
        task_id = sandbox.add_task(TITLE="t")
        sandbox.add_entry(task_id, 36000, "x")
        sandbox.fault("task.elapseditem.update", status=400, error="ERROR_CORE",
                      description="TASKS_ERROR_EXCEPTION_#1048578; Access denied; 1048578/TE<br>", in_batch=True)
        post_event(app, task_id)
        run_worker(app)
        decisions = app.test_client().get("/audit", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).get_json()
        assert [d["outcome"] for d in decisions["decisions"]] == ["not_allowed"]
        assert len(app.extensions["taskwarden"].queue()) == 0


def post_event(app: Flask, task_id: int) -> None:
    """Post an ONTASKUPDATE for the task straight to intake (no sandbox delivery needed)."""
    answer = app.test_client().post("/bitrix24/events", data=event_body(task_id), content_type=FORM)
    assert answer.get_json()["status"] == "queued"


class TestAuditApi:
    def test_needs_the_admin_token(self, client: Any, make_app: Callable[..., Flask]) -> None:
        """/audit: 401 without or with a wrong bearer token, 404 when no admin token is configured."""
        assert client.get("/audit").status_code == 401
        assert client.get("/audit", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/audit", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).status_code == 200
        unset = make_app(taskwarden_admin_token=None).test_client()
        assert unset.get("/audit", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).status_code == 404

    def test_bad_filters(self, client: Any) -> None:
        """Non-integer filters are a 400, not a 500."""
        answer = client.get("/audit?task=abc", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
        assert answer.status_code == 400


class TestLostAnswer:
    def test_a_clamp_whose_answer_was_lost_is_confirmed_not_repeated(self, app: Flask, sandbox: Any,
                                                                    wired: str) -> None:
        """The write batch is carried out but its answer never arrives: the entries are read back with
        task.elapseditem.get, and the clamp is recorded as done without being sent a second time."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 36000, "client call")
        deliver_edit(sandbox, task_id)
        sandbox.clear_requests()
        sandbox.fault("batch", status=0, skip=1, after=True)  # the read goes through; the write's answer is lost
        run_worker(app)
        entry = sandbox.entry(entry_id)
        assert (entry["SECONDS"], entry["COMMENT_TEXT"]) == (28800, "client call (capped at 8h)")
        sent = [c["method"] for r in work_requests(sandbox) for c in r["commands"]]
        assert sent.count("task.elapseditem.update") == 1 and sent.count("task.elapseditem.get") == 1
        audit = requests.get(f"{wired}/audit", params={"task": task_id},
                             headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=5).json()
        assert [d["outcome"] for d in audit["decisions"]] == ["changed"]
