"""The sweep scheduler: slots in the rules' time zone, one enqueue per slot across processes, catch-up once."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis

import keys
import queueing
from workers.scheduler import latest_slot, tick

from .helpers import TEST_REDIS_URL, poll

ROOT = Path(__file__).parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
EVERY_SECOND = """
timezone: Europe/Berlin
sweeps: {entries: "* * * * * *", tasks: "* * * * * *", full: "0 3 * * *"}
rules: []
"""


class TestLatestSlot:
    @pytest.mark.parametrize(("expression", "now", "slot"), [
        ("0 3 * * *", dt.datetime(2026, 3, 29, 10, 0, 5), dt.datetime(2026, 3, 29, 3, 0)),        # DST day
        ("0 3 * * *", dt.datetime(2026, 3, 29, 1, 59), dt.datetime(2026, 3, 28, 3, 0)),
        ("*/15 * * * *", dt.datetime(2026, 1, 5, 10, 14, 59), dt.datetime(2026, 1, 5, 10, 0)),
        ("*/15 * * * *", dt.datetime(2026, 1, 5, 10, 15, 0), dt.datetime(2026, 1, 5, 10, 15)),
        ("* * * * *", dt.datetime(2026, 1, 5, 10, 15, 30), dt.datetime(2026, 1, 5, 10, 15)),
    ])
    def test_table(self, expression: str, now: dt.datetime, slot: dt.datetime) -> None:
        """The latest slot at or before now, read in the rules' zone (not UTC)."""
        assert latest_slot(expression, now.replace(tzinfo=BERLIN)) == slot.replace(tzinfo=BERLIN)


class TestTick:
    def test_first_start_then_each_slot_once(self, make_app: Callable[..., Flask], redis: Redis) -> None:
        """A first tick only records where the schedule starts; later ticks enqueue each new slot once."""
        rt = make_app(EVERY_SECOND).extensions["taskwarden"]
        now = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=BERLIN)
        assert tick(rt, now) == []
        later = now + dt.timedelta(seconds=1)
        assert sorted(tick(rt, later)) == [f"sweep-entries-{int(later.timestamp())}",
                                           f"sweep-tasks-{int(later.timestamp())}"]
        assert tick(rt, later) == []  # same slot again: nothing

    def test_catch_up_once_after_downtime(self, make_app: Callable[..., Flask], redis: Redis) -> None:
        """After an hour down, each kind gets one sweep for its latest slot, not one per missed slot."""
        rt = make_app(EVERY_SECOND).extensions["taskwarden"]
        now = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=BERLIN)
        for kind in ("entries", "tasks", "full"):
            redis.set(keys.schedule_last(rt.portal.id, kind), int((now - dt.timedelta(days=1)).timestamp()))
        enqueued = tick(rt, now)
        assert len(enqueued) == 3
        assert f"sweep-full-{int(now.replace(hour=3).timestamp())}" in enqueued
        assert len(rt.queue(queueing.SWEEP_QUEUE)) == 3


class TestSchedulerProcesses:
    @pytest.mark.slow
    def test_two_schedulers_enqueue_each_slot_once(self, tmp_path: Path, redis: Redis) -> None:
        """Two real scheduler processes over several one-second slots: every slot enqueued exactly once."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(EVERY_SECOND)
        env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": str(rules), "LOG_FORMAT": "json"}
        flask = [sys.executable, "-m", "flask", "--app", "app", "scheduler"]
        procs = [subprocess.Popen(flask, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
        queue_key = f"rq:queue:{queueing.SWEEP_QUEUE}"
        try:
            poll(lambda: redis.llen(queue_key) >= 8, "eight enqueued sweeps", timeout=30, interval=0.1)
        finally:
            for proc in procs:
                proc.terminate()
            outputs = [proc.communicate(timeout=10)[0] for proc in procs]
        job_ids = [raw.decode() for raw in redis.lrange(queue_key, 0, -1)]  # type: ignore[union-attr]
        assert len(job_ids) == len(set(job_ids))
        for kind in ("entries", "tasks"):
            slots = sorted(int(job.rsplit("-", 1)[1]) for job in job_ids if job.startswith(f"sweep-{kind}-"))
            assert slots == list(range(slots[0], slots[0] + len(slots)))  # consecutive, none twice
        assert all("scheduler.started" in out for out in outputs)
