"""The master dies under load, Sentinel promotes the replica, and nothing acknowledged is lost.

Everything is real: the topology of ``tests/test_sentinel_topology.py`` (a master, a replica, three
Sentinels, all with passwords), the production web command (gunicorn with ``config/gunicorn.py``, gevent),
two ``flask --app app worker`` processes and ``flask --app app scheduler``, all given only the Sentinels'
addresses, and the sandbox portal over HTTP. Threads post one event per task (each task has one time entry
over the 8 h cap, so a lost event leaves its entry uncapped) while the master is killed with SIGKILL.

With ``TASKWARDEN_REDIS_MIN_REPLICAS=1`` every task whose event was answered 2xx gets capped by the
workers. Without it, Redis may lose the last writes a dying master acknowledged; the ``tasks`` sweep is
what finds those changes, so the test runs it and then expects every task capped. Either way: no answer
is 5xx, the workers and the scheduler carry on without a restart (a job queued after the failover is done,
the scheduler beats on the new master), no job failed for good, no two evaluations of a task ran at once,
and no password appears in any process's output. How long the failover took and how many events were
spooled is printed, not asserted (``bench/failover.py`` measures it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from redis.sentinel import SentinelConnectionPool
from rq import Queue
from rq.serializers import JSONSerializer

import keys
import queueing
from config.portal import portal_from_settings
from queueing import enqueue_evaluation

from .helpers import FORM, TEST_APP_TOKEN, TEST_SECRET, event_body, poll
from .test_recovery import descendants
from .test_sentinel_topology import SentinelTopology, free_port

ROOT = Path(__file__).resolve().parent.parent
REDIS_PASSWORD = "redis-pass-for-failover"
SENTINEL_PASSWORD = "sentinel-pass-for-failover"
"""The passwords of the test's own servers: they must show in no process's output."""
SEEDED_TASKS = 3600
"""The sandbox's ``enforce`` seed: every sixth task has one time entry over the cap."""
SENDERS = 2
PACE_SECONDS = 0.05
"""Each sender's pause between two events: a steady load of at most SENDERS / PACE events per second."""
BEFORE_KILL = 60
AFTER_FAILOVER = 60
"""Events answered before the master is killed, and after the Sentinels have promoted the replica."""


def rules_text() -> str:
    """The cap rule, and sweeps that will not come round during the test: only events (and the sweep the
    test runs itself) cap entries here."""
    far = dt.date.today() + dt.timedelta(days=180)
    cron = f"0 0 {far.day} {far.month} *"
    return (f"timezone: UTC\nsweeps: {{entries: '{cron}', tasks: '{cron}', full: '{cron}'}}\nrules:\n"
            "  - name: cap-time-entries\n    policy: elapsed_cap\n"
            "    params: {max_seconds: 28800, action: clamp, note: ' (capped at 8h)'}\n")


@dataclass
class Service:
    """The processes of one deployment and where their output goes."""

    env: dict[str, str]
    directory: Path
    url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        with open(self.directory / f"{name}.log", "wb") as out:
            self.processes[name] = subprocess.Popen(list(args), cwd=self.directory, env=self.env, stdout=out,
                                                    stderr=subprocess.STDOUT)

    def flask(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=self.directory,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def running(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.directory.glob("*.log"))

    def stop(self) -> None:
        for process in self.processes.values():
            for pid in [*descendants(process.pid), process.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            process.wait(timeout=10)


class Load:
    """Threads posting one ONTASKUPDATE per task, at a steady pace, and every answer they got."""

    def __init__(self, url: str, task_ids: list[int], senders: int = SENDERS, pace: float = PACE_SECONDS) -> None:
        self.url = url
        self.pace = pace
        self._tasks = iter(task_ids)
        self._lock = threading.Lock()
        self.answers: list[tuple[int, int, str, float]] = []
        """(task id, HTTP status or 0 for no answer, the answer's ``status``, ``time.monotonic()`` when sent)"""
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(senders)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def answered(self) -> int:
        with self._lock:
            return len(self.answers)

    def _next_task(self) -> int | None:
        with self._lock:
            return next(self._tasks, None)

    def _send(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            task_id = self._next_task()
            if task_id is None:
                return
            sent = time.monotonic()
            try:
                answer = session.post(f"{self.url}/bitrix24/events", data=event_body(task_id),
                                      headers={"Content-Type": FORM}, timeout=30)
                outcome = (task_id, answer.status_code, str(answer.json().get("status")), sent)
            except (requests.RequestException, ValueError) as error:
                outcome = (task_id, 0, type(error).__name__, sent)
            with self._lock:
                self.answers.append(outcome)
            self.stop.wait(self.pace)  # the load's pace, not a wait for anything


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    running = SentinelTopology(tmp_path / "topology", password=REDIS_PASSWORD, sentinel_password=SENTINEL_PASSWORD)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def service_env(topology: SentinelTopology, directory: Path, sandbox_url: str, min_replicas: int) -> dict[str, str]:
    (directory / "rules.yaml").write_text(rules_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "SANDBOX_", "TASKWARDEN_", "WEB_",
                                                                      "REDIS_"))}
    return env | topology.env(db=9) | {
        "PYTHONPATH": str(ROOT), "RULES_FILE": str(directory / "rules.yaml"), "SANDBOX_URL": sandbox_url,
        "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN,
        "B24_RATE_LIMIT": "10", "B24_RATE_BURST": "100", "SPOOL_DIR": str(directory / "spool"),
        "TASKWARDEN_REDIS_MIN_REPLICAS": str(min_replicas), "TASKWARDEN_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "2", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


def require_workers_on_sentinel(settings: Any) -> None:
    """Stop here, before any worker starts, if the worker command would not use the Sentinels: it would
    run RQ on REDIS_URL's default server, 127.0.0.1:6379 db 0, which is not this test's."""
    import runtime
    from policies import load_policy_rules
    from workers.worker import build_worker

    worker = build_worker(runtime.build_runtime(settings, load_policy_rules(settings.rules_file)))
    if not isinstance(worker.connection.connection_pool, SentinelConnectionPool):
        pytest.fail("the worker's RQ connection does not go through the Sentinels: the workers would not follow "
                    "the master")


@pytest.mark.slow
@pytest.mark.timeout(300)  # a whole deployment, a failover and a drain: past the suite's default on a slow host
@pytest.mark.parametrize("min_replicas", [1, 0])
def test_master_killed_under_load(tmp_path: Path, topology: SentinelTopology, sandbox: Any, sandbox_server: Any,
                                  min_replicas: int) -> None:
    sandbox.reset(seed=f"enforce:{SEEDED_TASKS}", rate=10, burst=100)
    entries = {e["TASK_ID"]: e["ID"] for e in sandbox.entries() if e["SECONDS"] > 28800}
    task_ids = sorted(entries)
    spare = task_ids.pop()  # evaluated by a job queued after the failover
    directory = tmp_path / "service"
    directory.mkdir()
    service = Service(service_env(topology, directory, sandbox_server.url, min_replicas), directory)
    settings = topology.settings(rules_file=service.env["RULES_FILE"], sandbox_url=sandbox_server.url,
                                 sandbox_secret=TEST_SECRET, sandbox_application_token=TEST_APP_TOKEN)
    portal_id = portal_from_settings(settings).id
    from redis_connect import connect

    redis = connect(settings)  # the test's own view, through the Sentinels like everybody's
    require_workers_on_sentinel(settings)
    try:
        service.start("web", sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"),
                      "app:create_app()")
        for name in ("worker-1", "worker-2"):
            service.start(name, sys.executable, "-m", "flask", "--app", "app", "worker")
        service.start("scheduler", sys.executable, "-m", "flask", "--app", "app", "scheduler")
        service.url = f"http://{service.env['TASKWARDEN_BIND']}"
        poll(lambda: _answers(f"{service.url}/readyz") or not all(service.running().values()),
             "gunicorn to be ready", 60)
        assert all(service.running().values()), service.output()[-3000:]
        poll(lambda: len(_workers(redis)) == 2, "both workers to register", 60)

        with Load(service.url, task_ids) as load:
            poll(lambda: load.answered() >= BEFORE_KILL, "the first events to be answered", 60)
            old = topology.master_port()
            assert old is not None
            topology.kill(old)
            killed_at = time.monotonic()
            new = topology.wait_for_new_master(old)
            failover_seconds = time.monotonic() - killed_at
            at_failover = load.answered()
            poll(lambda: load.answered() >= at_failover + AFTER_FAILOVER or load.stop.is_set(),
                 "events to be answered after the failover", 60)
        answers = load.answers

        assert [a for a in answers if not 200 <= a[1] < 300] == []  # no 5xx, no connection refused, no 4xx
        acknowledged = sorted({answer[0] for answer in answers})

        # a job queued after the failover gets done (by itself, or by a pass that took its task along)
        enqueue_evaluation(Queue(queueing.EVALUATION_QUEUE, connection=redis, serializer=JSONSerializer),
                           portal_id, spare)
        if not poll_quietly(lambda: sandbox.entry(entries[spare])["SECONDS"] == 28800, 120):
            raise AssertionError(f"a job queued after the failover was not done in 120 s: {_state(redis, portal_id)}")

        heartbeat = keys.scheduler_heartbeat(portal_id, socket.gethostname())
        redis.delete(heartbeat)  # it may have come over from the old master: wait for a fresh one
        poll(lambda: redis.exists(heartbeat), "the scheduler to beat on the new master", 30)

        lost = []
        if min_replicas:
            poll(lambda: not _uncapped(sandbox, entries, acknowledged), "every acknowledged task to be capped", 180,
                 interval=0.5)
        else:
            poll(lambda: _idle(redis, directory / "spool"), "the queue and the spool to empty", 180, interval=0.5)
            lost = _uncapped(sandbox, entries, acknowledged)
            swept = service.flask("reconcile", "--sweep", "tasks")
            assert swept.returncode == 0, swept.stderr
            assert _uncapped(sandbox, entries, acknowledged) == []

        for process in ("worker", "scheduler"):
            health = service.flask("health", process)
            assert health.returncode == 0, health.stdout + health.stderr
        assert all(service.running().values())  # no process had to be restarted
        assert len(_workers(redis)) == 2
        for name in queueing.QUEUES:
            queue = Queue(name, connection=redis, serializer=JSONSerializer)
            assert queue.failed_job_registry.get_job_ids() == []
        assert redis.hgetall(keys.lock_violations(portal_id)) == {}  # never two evaluations of a task at once
        output = service.output()
        assert REDIS_PASSWORD not in output and SENTINEL_PASSWORD not in output
        spooled = sum(1 for answer in answers if answer[1] == 202)
        print(json.dumps({"min_replicas": min_replicas, "failover_seconds": round(failover_seconds, 2),
                          "old_master": old, "new_master": new, "events": len(answers), "spooled": spooled,
                          "acknowledged_then_lost_before_the_sweep": len(lost)}))
    finally:
        service.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def poll_quietly(check: Any, timeout: float) -> bool:
    """``poll`` that answers False at the deadline, so that the caller can say what it found."""
    try:
        poll(check, "", timeout, interval=0.2)
    except AssertionError:
        return False
    return True


def _state(redis: Redis, portal_id: str) -> dict[str, Any]:
    """What a job that was not done may be waiting for: the queue, the workers, the portal's pass."""
    queue = Queue(queueing.EVALUATION_QUEUE, connection=redis, serializer=JSONSerializer)
    return {"queued": queue.job_ids[:5], "count": queue.count, "started": queue.started_job_registry.get_job_ids(),
            "scheduled": queue.scheduled_job_registry.get_job_ids(), "pass_lock": redis.get(keys.pass_lock(portal_id)),
            "handed_over": redis.get(keys.handed_over(portal_id)), "waiting": redis.hlen(keys.waiting(portal_id)),
            "workers": [(w.name, w.state, w.get_current_job_id()) for w in _workers(redis)],
            "clients": [c.get("cmd") for c in redis.client_list()]}


def _workers(redis: Redis) -> list[Any]:
    from rq import Worker

    return list(Worker.all(connection=redis))


def _uncapped(sandbox: Any, entries: dict[int, int], tasks: list[int]) -> list[int]:
    seconds = {e["ID"]: e["SECONDS"] for e in sandbox.entries()}
    return [task for task in tasks if seconds[entries[task]] != 28800]


def _idle(redis: Redis, spool: Path) -> bool:
    """Nothing queued, running or scheduled, and no event left in a spool file."""
    for name in queueing.QUEUES:
        queue = Queue(name, connection=redis, serializer=JSONSerializer)
        if queue.count or queue.started_job_registry.count or queue.scheduled_job_registry.count:
            return False
    return not any(path.stat().st_size for path in spool.glob("events-*")) if spool.is_dir() else True
