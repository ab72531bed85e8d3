"""The web process as it is deployed: gunicorn with ``config/gunicorn.py`` (gevent workers), over real HTTP.

Intake binds each event's ids to structlog's context variables and waits on Redis in the middle of the
request, when gevent runs other requests. These tests check that concurrent events in one worker keep
their own context and all reach Redis, which would break if greenlets shared one context, and that the
spool's background drainer (a greenlet under gevent) queues what an outage left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from redis import Redis

import queueing

from .helpers import DEFAULT_RULES, FORM, TEST_APP_TOKEN, TEST_REDIS_URL, event_body, poll
from .redis_process import RedisProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def web(tmp_path: Path, redis: Redis) -> Iterator[tuple[str, Path]]:
    """One gunicorn worker with the production config; yields its URL and the file its output goes to."""
    with run_web(tmp_path, TEST_REDIS_URL) as running:
        yield running


@contextmanager
def run_web(tmp_path: Path, redis_url: str, **extra_env: str) -> Iterator[tuple[str, Path]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "rules.yaml").write_text(DEFAULT_RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "SANDBOX_", "TASKWARDEN_", "WEB_"))}
    env |= {"PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "RULES_FILE": str(tmp_path / "rules.yaml"),
            "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "TASKWARDEN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **extra_env}
    output = tmp_path / "web.log"
    with open(output, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"),
                                 "app:create_app()"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _answers(f"{url}/healthz") or proc.poll() is not None, "gunicorn to answer /healthz", 30)
        assert proc.poll() is None, output.read_text()[-3000:]
        yield url, output
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_concurrent_events_keep_their_own_log_context(web: tuple[str, Path], redis: Redis) -> None:
    url, output = web
    task_ids = list(range(1001, 1065))

    def send(task_id: int) -> dict[str, str]:
        answer = requests.post(f"{url}/bitrix24/events", data=event_body(task_id), headers={"Content-Type": FORM},
                               timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, task_ids))
    expected = {f"ONTASKUPDATE:{task_id}:1766047124:27" for task_id in task_ids}
    assert {a["status"] for a in answers} == {"queued"}
    assert {a["event_id"] for a in answers} == expected
    assert redis.llen(f"rq:queue:{queueing.EVALUATION_QUEUE}") == len(task_ids)

    def queued_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
        found = [line for line in lines if line.get("event") == "intake.queued"]
        return found if len(found) >= len(task_ids) else []

    lines = poll(queued_lines, "one intake.queued line per event in the server's output")
    assert sorted(str(line["event_id"]) for line in lines) == sorted(expected)  # each once, none lost or mixed
    for line in lines:
        assert str(line["event_id"]).split(":")[1] == str(line["task_id"])
        assert TEST_APP_TOKEN not in json.dumps(line)



@pytest.mark.slow
def test_events_spooled_in_an_outage_are_queued_when_redis_is_back(tmp_path: Path,
                                                                    own_redis: RedisProcess) -> None:
    def send(task_id: int) -> tuple[int, str]:
        answer = requests.post(f"{url}/bitrix24/events", data=event_body(task_id),
                               headers={"Content-Type": FORM}, timeout=10)
        return answer.status_code, answer.json()["status"]

    with run_web(tmp_path, own_redis.url) as (url, _):
        assert send(1) == (200, "queued")
        own_redis.stop()
        assert [send(2), send(3)] == [(202, "spooled")] * 2
        assert requests.get(f"{url}/healthz", timeout=2).status_code == 200
        own_redis.start()  # empty: task 1's job went with the old server
        redis = Redis.from_url(own_redis.url)
        queue_key = f"rq:queue:{queueing.EVALUATION_QUEUE}"
        poll(lambda: redis.llen(queue_key) == 2, "the drainer to queue the spooled events", timeout=20)
        assert redis.exists(*(key for key in redis.scan_iter(match="taskwarden:*:pending:*"))) == 2
        assert send(4) == (200, "queued")


@pytest.mark.slow
def test_stalled_bodies_are_let_go_and_genuine_events_get_through(tmp_path: Path, redis: Redis) -> None:
    """Clients that send headers and never finish the body are answered 408 once the body timeout passes, so
    even more of them than the worker has connections do not keep a genuine event out for good."""
    with run_web(tmp_path, TEST_REDIS_URL, WEB_WORKER_CONNECTIONS="10", TASKWARDEN_BODY_TIMEOUT="1") as (url, _out):
        port = int(url.rsplit(":", 1)[1])
        stalled = []
        for _ in range(15):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.sendall(b"POST /bitrix24/events HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode()
                         + b"\r\nContent-Length: 400\r\n\r\nevent=ONTASK")
            stalled.append(sock)
        answer = requests.post(f"{url}/bitrix24/events", data=event_body(4242), headers={"Content-Type": FORM},
                               timeout=60)
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
        for sock in stalled:
            reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
            rest = reply
            while b"body_timeout" not in rest:
                rest += sock.recv(4096)
            assert sock.recv(4096) == b""  # and the server closed the connection: the rest is never read
            sock.close()
