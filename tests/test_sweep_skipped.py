"""A task a sweep skips because an event job holds it is evaluated by the next sweep of that kind.

The event job may have read the task before what the sweep found (a time entry added meanwhile raises no
event), so "that job covers it" does not hold. Sweeps run here as ``reconcile`` processes against the
tests' Redis and the sandbox; the lock is held the way an event job holds it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from redis import Redis

import keys
from workers.locks import KeptLock
from workers.sweeps import run_sweep

from .helpers import TEST_APP_TOKEN, TEST_REDIS_URL, TEST_SECRET

ROOT = Path(__file__).parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
CAP_ONLY = """
rules:
  - name: cap
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
DEADLINES = """
timezone: Europe/Berlin
rules:
  - name: default-deadline
    policy: deadline
    params: {set_if_missing: {workdays: 2, at: "18:00"}}
"""
EVENT_JOB_LOCK_SECONDS = 15
"""The TTL an event job's task lock has (``workers.jobs``), renewed while it holds it."""


def reconcile(app: Flask, sandbox_url: str, *args: str) -> str:
    """Run ``flask --app app reconcile`` in a process of its own with the app's settings; its summary line."""
    settings = app.extensions["taskwarden"].settings
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": settings.rules_file, "SANDBOX_URL": sandbox_url,
           "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "LOG_LEVEL": "WARNING",
           "SPOOL_DIR": settings.spool_dir}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "reconcile", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def held_as_by_an_event_job(redis: Redis, portal_id: str, task_id: int) -> KeptLock:
    lock = KeptLock(redis, keys.task_lock(portal_id, task_id), EVENT_JOB_LOCK_SECONDS)
    assert lock.acquire()
    return lock


class TestEntriesSweep:
    def test_entry_of_a_busy_task_is_capped_by_the_next_sweep(self, make_app: Callable[..., Flask], sandbox: Any,
                                                               sandbox_server: Any, redis: Redis) -> None:
        """An event job holds T while a 33,000 s entry is added; the sweep skips T and moves its cursor on;
        once the job is done, the next entries sweep (nothing new to read) caps the entry."""
        app = make_app(CAP_ONLY)
        portal_id = app.extensions["taskwarden"].portal.id
        task_id = sandbox.add_task(TITLE="busy")
        lock = held_as_by_an_event_job(redis, portal_id, task_id)
        entry = sandbox.add_entry(task_id, 33000, "late call")
        try:
            first = reconcile(app, sandbox_server.url, "--sweep", "entries")
        finally:
            lock.release()
        assert "1 entries seen" in first and "1 busy" in first and "0 changed" in first
        assert sandbox.entry(entry)["SECONDS"] == 33000
        assert redis.hget(keys.cursor(portal_id, "entries"), "last_id") == str(entry).encode()
        assert redis.smembers(keys.sweep_skipped(portal_id, "entries")) == {str(task_id).encode()}

        second = reconcile(app, sandbox_server.url, "--sweep", "entries")
        assert "0 entries seen" in second and "1 changed" in second and "0 busy" in second
        assert sandbox.entry(entry)["SECONDS"] == 28800
        assert not redis.exists(keys.sweep_skipped(portal_id, "entries"))

    def test_still_busy_stays_listed_and_dry_run_leaves_the_list(self, make_app: Callable[..., Flask],
                                                                 sandbox: Any, redis: Redis) -> None:
        """A task busy again on the next sweep stays listed; a ``--dry-run`` evaluates the listed tasks in audit
        mode and leaves the list (and the cursor) as they were."""
        app = make_app(CAP_ONLY)
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="busy")
        entry = sandbox.add_entry(task_id, 33000, "late call")
        skipped = keys.sweep_skipped(rt.portal.id, "entries")
        lock = held_as_by_an_event_job(redis, rt.portal.id, task_id)
        try:
            assert run_sweep(rt, "entries").skipped_busy == 1
            assert run_sweep(rt, "entries").skipped_busy == 1
        finally:
            lock.release()
        assert redis.smembers(skipped) == {str(task_id).encode()}
        dry = run_sweep(rt, "entries", dry_run=True)
        assert (dry.entries_seen, dry.would_change) == (0, 1)
        assert redis.smembers(skipped) == {str(task_id).encode()} and sandbox.entry(entry)["SECONDS"] == 33000
        assert run_sweep(rt, "entries").changed == 1
        assert not redis.exists(skipped)


class TestTasksSweep:
    def test_changed_task_that_was_busy_is_evaluated_by_the_next_sweep(
            self, make_app: Callable[..., Flask], sandbox: Any, redis: Redis) -> None:
        """The tasks sweep moves its cursor past a change it could not evaluate (busy); the next tasks sweep,
        with no new change, evaluates that task and sets its deadline."""
        app = make_app(DEADLINES)
        rt = app.extensions["taskwarden"]
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)
        task_id = sandbox.add_task(TITLE="busy", CREATED_DATE=created)
        lock = held_as_by_an_event_job(redis, rt.portal.id, task_id)
        try:
            first = run_sweep(rt, "tasks")
        finally:
            lock.release()
        assert (first.tasks_seen, first.skipped_busy, first.changed) == (1, 1, 0)
        second = run_sweep(rt, "tasks")
        assert (second.tasks_seen, second.evaluated, second.changed, second.missed_by_events) == (0, 1, 1, 0)
        assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 20, 18, 0, tzinfo=BERLIN)
        assert not redis.exists(keys.sweep_skipped(rt.portal.id, "tasks"))
