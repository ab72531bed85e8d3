"""Sweeps through the sandbox: what events missed gets fixed, cursors, failure midway, request economy."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis

import keys
from workers.evaluation import RetryableEvaluationError
from workers.sweeps import SweepBusy, run_sweep

from .helpers import TEST_ADMIN_TOKEN

BERLIN = ZoneInfo("Europe/Berlin")
RULES = """
timezone: Europe/Berlin
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800, note: " (capped)"}
  - name: default-deadline
    policy: deadline
    params: {set_if_missing: {workdays: 2, at: "18:00"}}
"""
CAP_ONLY = """
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
CREATED = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)


def audit(app: Flask, **filters: Any) -> list[dict[str, Any]]:
    return app.test_client().get("/audit", query_string={"limit": 1000, **filters},
                                 headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).get_json()["decisions"]


class TestMissedEvents:
    def test_sweeps_fix_what_events_missed(self, make_app: Callable[..., Flask], sandbox: Any, redis: Redis) -> None:
        """Events lost (delivery paused): the tasks sweep sets deadlines, the entries sweep caps entries."""
        app = make_app(RULES)
        rt = app.extensions["taskwarden"]
        sandbox.configure(events_paused=True)
        no_deadline = [sandbox.add_task(TITLE=f"t{i}", CREATED_DATE=CREATED) for i in range(3)]
        long_entry = sandbox.add_entry(no_deadline[0], 36000, "call")
        assert {e["outcome"] for e in sandbox.events()} == {"dropped"}

        entries_stats = run_sweep(rt, "entries")
        assert (entries_stats.entries_seen, entries_stats.changed, entries_stats.missed_by_events) == (1, 1, 0)
        assert sandbox.entry(long_entry)["SECONDS"] == 28800

        tasks_run = app.test_cli_runner().invoke(args=["reconcile", "--sweep", "tasks"])
        assert tasks_run.exit_code == 0, tasks_run.output
        assert "3 tasks and 0 entries seen" in tasks_run.output and "3 changed" in tasks_run.output
        assert "3 missed by events" in tasks_run.output
        for task_id in no_deadline:
            assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 20, 18, 0, tzinfo=BERLIN)

        decisions = audit(app)
        assert {d["cause"] for d in decisions} == {"sweep"}
        deadline_fixes = [d for d in decisions if d["rule"] == "default-deadline"]
        assert len(deadline_fixes) == 3 and all(d["missed_by_events"] for d in deadline_fixes)
        assert not any(d["missed_by_events"] for d in decisions if d["rule"] == "cap")
        assert redis.hget(keys.missed_by_events(rt.portal.id), "default-deadline") == b"3"

    def test_dry_run_changes_nothing_and_keeps_the_cursor(self, make_app: Callable[..., Flask], sandbox: Any,
                                                           redis: Redis) -> None:
        """--dry-run writes nothing, records would_change, and leaves the cursor where it was."""
        app = make_app(RULES)
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=CREATED)
        result = app.test_cli_runner().invoke(args=["reconcile", "--sweep", "tasks", "--dry-run"])
        assert "(dry run)" in result.output and "1 would change" in result.output
        assert sandbox.task(task_id)["DEADLINE"] is None
        assert not redis.exists(keys.cursor(rt.portal.id, "tasks"))
        assert [d["outcome"] for d in audit(app)] == ["would_change"]


class TestCursors:
    def test_second_tasks_sweep_visits_only_changes(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """After a sweep, the next tasks sweep visits only tasks changed since (here: one edited task)."""
        app = make_app(RULES)
        rt = app.extensions["taskwarden"]
        deadline = dt.datetime(2026, 2, 1, 12, 0, tzinfo=BERLIN)
        ids = [sandbox.add_task(TITLE=f"t{i}", CREATED_DATE=CREATED, DEADLINE=deadline) for i in range(5)]
        assert run_sweep(rt, "tasks").tasks_seen == 5
        assert run_sweep(rt, "tasks").tasks_seen == 0
        sandbox.update_task(ids[2], TITLE="edited", DEADLINE=None)
        second = run_sweep(rt, "tasks")
        assert (second.tasks_seen, second.changed) == (1, 1)
        assert sandbox.task(ids[2])["DEADLINE"] == dt.datetime(2026, 1, 20, 18, 0, tzinfo=BERLIN)

    def test_entries_cursor(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """The entries sweep remembers the last entry ID: a second run sees only newer entries."""
        app = make_app(CAP_ONLY)
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t")
        for seconds in (100, 200, 300):
            sandbox.add_entry(task_id, seconds, "x")
        assert run_sweep(rt, "entries").entries_seen == 3
        newer = sandbox.add_entry(task_id, 40000, "late")
        again = run_sweep(rt, "entries")
        assert (again.entries_seen, again.changed) == (1, 1)
        assert sandbox.entry(newer)["SECONDS"] == 28800

    def test_failure_midway_keeps_cursor_and_next_run_completes(self, make_app: Callable[..., Flask],
                                                                 sandbox: Any, redis: Redis) -> None:
        """A sweep whose writes fail (portal 500) stops without moving its cursor; the next run finishes."""
        app = make_app(CAP_ONLY)
        rt = app.extensions["taskwarden"]
        task_ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(3)]
        entries = [sandbox.add_entry(task_id, 30000 + task_id, "x") for task_id in task_ids]
        sandbox.fault("task.elapseditem.update", status=500, error="INTERNAL_SERVER_ERROR", in_batch=True, times=1)
        with pytest.raises(RetryableEvaluationError):
            run_sweep(rt, "entries")
        assert not redis.hget(keys.cursor(rt.portal.id, "entries"), "last_id")
        assert sorted(sandbox.entry(e)["SECONDS"] for e in entries).count(28800) == 2  # one write failed
        done = run_sweep(rt, "entries")
        assert done.entries_seen == 3 and done.changed == 1
        assert [sandbox.entry(e)["SECONDS"] for e in entries] == [28800] * 3
        assert redis.hget(keys.cursor(rt.portal.id, "entries"), "last_id") == str(max(entries)).encode()

    def test_same_kind_never_twice(self, make_app: Callable[..., Flask], sandbox: Any, redis: Redis) -> None:
        """While a sweep of a kind holds its lock, another of that kind refuses to start."""
        app = make_app(CAP_ONLY)
        rt = app.extensions["taskwarden"]
        held = redis.lock(keys.sweep_lock(rt.portal.id, "entries"), timeout=30)
        assert held.acquire(blocking=False)
        with pytest.raises(SweepBusy):
            run_sweep(rt, "entries")
        held.release()
        assert run_sweep(rt, "entries").kind == "entries"


class TestRequestEconomy:
    def test_full_sweep_of_500_tasks(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A full sweep of 500 tasks (about 1,500 entries) takes a handful of batch requests, not 500+.

        Bound: one request carries the first page and count of both listings; each further request reads
        up to 2,500 rows (50 chained pages of 50); writes go 50 per batch. So requests <= 1 +
        ceil((entries - 50) / 2500) + ceil((500 - 50) / 2500) + ceil(writes / 50). One request per task
        would be 500 or more.
        """
        sandbox.reset(seed=500)
        app = make_app(CAP_ONLY)
        entries = sandbox.entries()
        over = sum(1 for e in entries if int(e["SECONDS"]) > 28800)
        sandbox.clear_requests()
        stats = run_sweep(app.extensions["taskwarden"], "full")
        log = sandbox.requests()
        bound = 1 + math.ceil((len(entries) - 50) / 2500) + math.ceil((500 - 50) / 2500) + math.ceil(over / 50)
        assert stats.tasks_seen == 500 and stats.entries_seen == len(entries) and stats.changed == over
        assert len(log) == stats.requests <= bound
        assert len(log) < 500 / 20
        assert all(r["method"] == "batch" for r in log)
        assert all(int(e["SECONDS"]) <= 28800 for e in sandbox.entries())
