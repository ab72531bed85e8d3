"""Workers and the scheduler ride out a Redis outage: real processes, a redis-server of the test's own stopped
for longer than redis-py's own retries last, a worker started while it is down, and work done once it is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Worker

import keys
from queueing import enqueue_evaluation

from .helpers import DEFAULT_RULES, TEST_APP_TOKEN, TEST_SECRET, poll
from .test_recovery import descendants

ROOT = Path(__file__).parent.parent
QUIET_SCHEDULE = 'sweeps: {entries: "0 3 1 1 *", tasks: "0 3 1 1 *", full: "0 3 1 1 *"}\n'
"""Sweeps once a year: the scheduler still ticks (and beats), but no sweep caps an entry in the evaluation's place."""
OUTAGE_SECONDS = 10
"""How long Redis stays away: longer than redis-py's default retries (about 5 s), so only a process that waits
for Redis itself lives through it."""


class Processes:
    """Taskwarden processes started with ``flask --app app ...``, their output in files to read while they run."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *command: str) -> None:
        with (self.directory / f"{name}.log").open("wb") as output:
            self.running[name] = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *command], cwd=ROOT,
                                                  env=self.env, stdout=output, stderr=subprocess.STDOUT)

    def output(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def all_alive(self) -> bool:
        for name, process in self.running.items():
            assert process.poll() is None, f"{name} exited ({process.returncode}): {self.output(name)[-3000:]}"
        return True

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything below it (its work horse, RQ's scheduler), as a container's
        end would; it is no longer one of the running ones."""
        process = self.running.pop(name)
        if process.poll() is None:
            for pid in [*descendants(process.pid), process.pid]:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=10)

    def kill_all(self) -> None:
        for name in list(self.running):
            self.kill(name)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[Flask, str, str], Processes]]:
    started: list[Processes] = []

    def make(app: Flask, redis_url: str, sandbox_url: str) -> Processes:
        settings = app.extensions["taskwarden"].settings
        env = {**os.environ, "REDIS_URL": redis_url, "RULES_FILE": settings.rules_file, "SANDBOX_URL": sandbox_url,
               "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "LOG_FORMAT": "json",
               "SPOOL_DIR": settings.spool_dir, "B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}
        started.append(Processes(env, tmp_path))
        return started[-1]

    yield make
    for group in started:
        group.kill_all()


def met_outage(output: str) -> bool:
    return "redis.unreachable" in output


@pytest.mark.slow
def test_workers_and_scheduler_ride_out_an_outage(make_app: Callable[..., Flask], own_redis: Any, sandbox: Any,
                                                  sandbox_server: Any,
                                                  processes: Callable[[Flask, str, str], Processes]) -> None:
    """Redis stops while a worker watches a running job; a second worker starts during the outage; Redis comes
    back with its data. Every process is still running and listed, the job that ran across the outage and one
    queued afterwards both cap their entries, and the scheduler beats again."""
    app = make_app(DEFAULT_RULES + QUIET_SCHEDULE, redis_url=own_redis.url)
    rt = app.extensions["taskwarden"]
    redis = Redis.from_url(own_redis.url)
    group = processes(app, own_redis.url, sandbox_server.url)
    before, after = (sandbox.add_task(TITLE=f"t{n}") for n in range(2))
    entries = {task_id: sandbox.add_entry(task_id, 40000, "x") for task_id in (before, after)}
    group.start("worker-a", "worker")
    group.start("scheduler", "scheduler")
    heartbeat = keys.scheduler_heartbeat(rt.portal.id, socket.gethostname())
    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 1 and redis.exists(heartbeat),
         "the worker and the scheduler to start", timeout=60, interval=0.2)

    sandbox.fault("batch", status=200, delay=OUTAGE_SECONDS + 5, times=1)  # the job runs across the outage
    running = enqueue_evaluation(rt.queue(), rt.portal.id, before)
    poll(lambda: running.id in rt.queue().started_job_registry.get_job_ids(), "the job to start", timeout=30)

    redis.config_set("save", "3600 1")  # so that the server writes its data when stopped and reads it at start
    own_redis.stop()
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    group.start("worker-b", "worker")
    poll(lambda: group.all_alive() and all(met_outage(group.output(name)) for name in group.running),
         "every process to meet the outage", timeout=30, interval=0.2)
    poll(lambda: group.all_alive() and time.monotonic() >= outage_ends, "the end of the outage",
         timeout=OUTAGE_SECONDS + 5, interval=0.2)
    own_redis.start()

    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 2, "both workers listed", timeout=60,
         interval=0.2)
    redis.delete(heartbeat)
    poll(lambda: redis.exists(heartbeat), "the scheduler's heartbeat", timeout=30, interval=0.2)
    enqueue_evaluation(rt.queue(), rt.portal.id, after)  # it may step aside while the other pass runs
    poll(lambda: running.get_status(refresh=True) == "finished", "the evaluation that ran across the outage",
         timeout=90, interval=0.2)
    poll(lambda: [sandbox.entry(entries[task_id])["SECONDS"] for task_id in (before, after)] == [28800, 28800],
         "both entries capped", timeout=60, interval=0.2)
    assert len(rt.queue().failed_job_registry) == 0
    assert group.all_alive()


@pytest.mark.slow
def test_a_worker_stopped_during_an_outage_exits(make_app: Callable[..., Flask], own_redis: Any, sandbox_server: Any,
                                                 processes: Callable[[Flask, str, str], Processes]) -> None:
    """Waiting for Redis does not keep a worker from stopping: SIGTERM during an outage ends it (and RQ's
    scheduler process under it) with status 0."""
    app = make_app(redis_url=own_redis.url)
    redis = Redis.from_url(own_redis.url)
    group = processes(app, own_redis.url, sandbox_server.url)
    group.start("worker", "worker")
    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 1, "the worker to start", timeout=60,
         interval=0.2)
    worker = group.running["worker"]
    poll(lambda: descendants(worker.pid), "RQ's scheduler process", timeout=30, interval=0.2)
    own_redis.stop()
    poll(lambda: group.all_alive() and met_outage(group.output("worker")), "the worker to meet the outage",
         timeout=30, interval=0.2)
    below = descendants(worker.pid)
    worker.send_signal(signal.SIGTERM)
    poll(lambda: worker.poll() is not None, "the worker to exit", timeout=60, interval=0.2)
    assert worker.returncode == 0, group.output("worker")[-3000:]
    assert "worker.stopped_without_redis" in group.output("worker")
    assert not [pid for pid in below if Path(f"/proc/{pid}").exists()]


@pytest.mark.slow
def test_a_worker_lists_itself_again_when_redis_comes_back_empty(
        make_app: Callable[..., Flask], own_redis: Any, sandbox: Any, sandbox_server: Any,
        processes: Callable[[Flask, str, str], Processes]) -> None:
    """Redis restarted without its data forgets the worker: the worker lists itself again, passes its health
    check, and evaluates what is queued next."""
    app = make_app(DEFAULT_RULES + QUIET_SCHEDULE, redis_url=own_redis.url)
    rt = app.extensions["taskwarden"]
    redis = Redis.from_url(own_redis.url)
    group = processes(app, own_redis.url, sandbox_server.url)
    group.start("worker", "worker")
    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 1, "the worker to start", timeout=60,
         interval=0.2)
    own_redis.stop()
    poll(lambda: group.all_alive() and met_outage(group.output("worker")), "the worker to meet the outage",
         timeout=30, interval=0.2)
    own_redis.start()
    assert not redis.exists("rq:workers")  # nothing came back
    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 1, "the worker listed again",
         timeout=60, interval=0.2)
    health = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "health", "worker"], cwd=ROOT,
                            env=group.env, capture_output=True, timeout=60)
    assert health.returncode == 0, health.stdout + health.stderr
    task_id = sandbox.add_task(TITLE="t")
    entry_id = sandbox.add_entry(task_id, 40000, "x")
    job = enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    poll(lambda: job.get_status(refresh=True) == "finished", "the evaluation", timeout=60, interval=0.2)
    assert sandbox.entry(entry_id)["SECONDS"] == 28800
