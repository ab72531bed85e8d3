"""Concurrent events and workers are safe: bursts coalesce, and no task is ever evaluated twice at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from redis import Redis
from rq import Worker

import keys
from queueing import enqueue_evaluation
from workers.locks import KeptLock, concurrency_guard

from .helpers import FORM, TEST_APP_TOKEN, TEST_REDIS_URL, TEST_SECRET, event_body, poll

ROOT = Path(__file__).parent.parent


def worker_env(app: Flask, sandbox_url: str) -> dict[str, str]:
    settings = app.extensions["taskwarden"].settings
    return {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": settings.rules_file, "SANDBOX_URL": sandbox_url,
            "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "LOG_LEVEL": "WARNING",
            "B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000", "SPOOL_DIR": settings.spool_dir}


def workers(app: Flask, sandbox_url: str, count: int, burst: bool) -> list[subprocess.Popen[bytes]]:
    args = [sys.executable, "-m", "flask", "--app", "app", "worker", *(["--burst"] if burst else [])]
    return [subprocess.Popen(args, cwd=ROOT, env=worker_env(app, sandbox_url), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count)]


def reads_of(sandbox: Any, task_id: int) -> int:
    """How many read commands named this task (evaluations read tasks with tasks.task.list by ID)."""
    return sum(1 for r in sandbox.requests() for c in r["commands"]
               if c["method"] == "tasks.task.list" and str(task_id) in map(str, _ids(c["params"])))


def _ids(params: dict[str, Any]) -> list[Any]:
    wanted = params.get("filter", {}).get("ID", [])
    return list(wanted.values()) if isinstance(wanted, dict) else wanted if isinstance(wanted, list) else [wanted]


class TestGuard:
    def test_violation_is_counted(self, redis: Redis) -> None:
        """The guard the tests rely on does notice two evaluations of one task at once."""
        with concurrency_guard(redis, "p", [7]), concurrency_guard(redis, "p", [7]):
            pass
        assert redis.hgetall(keys.lock_violations("p")) == {b"7": b"1"}


class TestKeptLock:
    def test_held_past_its_ttl_while_the_holder_lives(self, redis: Redis) -> None:
        """The keeper renews the lock: three TTLs later it is still ours and held, then released."""
        lock = KeptLock(redis, "taskwarden:p:lock:kept", ttl_seconds=1)
        assert lock.acquire()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # watched all along: it must never lapse
            assert redis.pttl("taskwarden:p:lock:kept") > 0
            threading.Event().wait(0.05)
        assert not KeptLock(redis, "taskwarden:p:lock:kept", ttl_seconds=1).acquire()
        lock.release()
        assert not redis.exists("taskwarden:p:lock:kept")


@pytest.mark.slow
class TestUnderLoad:
    def test_burst_of_50_events_for_one_task(self, app: Flask, sandbox: Any, sandbox_server: Any, live_app: str,
                                             redis: Redis) -> None:
        """50 events in a burst (10 senders) while two workers run: one or two evaluations, never at once."""
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="busy task")
        # The first evaluation's read takes 5 s, longer than the burst itself even on a loaded machine.
        sandbox.fault("batch", status=200, delay=5.0, times=1)
        procs = workers(app, sandbox_server.url, 2, burst=False)
        poll(lambda: len(Worker.all(connection=redis)) == 2, "the workers to start", timeout=60, interval=0.2)
        statuses: list[str] = []
        lock = threading.Lock()

        def send(offset: int) -> None:
            with requests.Session() as session:
                for i in range(5):
                    answer = session.post(f"{live_app}/bitrix24/events", data=event_body(task_id, ts=offset * 10 + i),
                                          headers={"Content-Type": FORM}, timeout=10)
                    with lock:
                        statuses.append(answer.json()["status"])

        try:
            senders = [threading.Thread(target=send, args=(n,)) for n in range(10)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(timeout=30)
            poll(lambda: len(rt.queue()) == 0 and not rt.queue().started_job_registry.get_job_ids()
                 and not redis.exists(keys.pending(rt.portal.id, task_id)) and reads_of(sandbox, task_id) >= 1,
                 "the evaluations to finish", timeout=60, interval=0.2)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=20)
        assert len(statuses) == 50 and statuses.count("queued") in (1, 2), statuses
        assert reads_of(sandbox, task_id) == statuses.count("queued")
        assert redis.hgetall(keys.lock_violations(rt.portal.id)) == {}

    def test_twenty_workers_two_hundred_tasks(self, app: Flask, sandbox: Any, sandbox_server: Any,
                                              redis: Redis) -> None:
        """20 worker processes on 600 evaluations of 200 tasks: the lock-violation counter stays empty."""
        rt = app.extensions["taskwarden"]
        sandbox.configure(burst=0)
        task_ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(200)]
        queue = rt.queue()
        with redis.pipeline() as pipe:
            for _ in range(3):
                for task_id in task_ids:
                    enqueue_evaluation(queue, rt.portal.id, task_id, pipeline=pipe)
            pipe.execute()
        procs = workers(app, sandbox_server.url, 20, burst=True)
        for proc in procs:
            proc.wait(timeout=240)
        assert redis.hgetall(keys.lock_violations(rt.portal.id)) == {}
        evaluated = {task_id for task_id in task_ids if reads_of(sandbox, task_id) > 0}
        assert evaluated == set(task_ids)
        assert len(queue.failed_job_registry) == 0
