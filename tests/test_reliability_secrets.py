"""A failed job's error text is stored by RQ for days and shown on /rq and by ``flask --app app failed``: the
webhook secret and the application token in it are masked before RQ stores it."""

from __future__ import annotations

import base64
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

import runtime

from .helpers import TEST_APP_TOKEN, TEST_SECRET, run_worker
from .test_reliability_outage import Processes, processes  # noqa: F401  # the fixture, used below

ROOT = Path(__file__).parent.parent
SECRETS = (TEST_SECRET.encode(), TEST_APP_TOKEN.encode())
FAILING_JOB = f"{__name__}.fail_echoing_secrets"


def fail_echoing_secrets() -> None:
    """A job whose error echoes the webhook URL and the application token, as a library's error may."""
    portal = runtime.current().portal
    raise RuntimeError(f"POST {portal.webhook_url}tasks.task.list failed; auth[application_token]="
                       f"{portal.application_token}")


def readings(value: bytes) -> Iterator[bytes]:
    """A stored value as it is, and as RQ packs text (zlib, or base64 of zlib) where it is packed."""
    yield value
    for unpack in (zlib.decompress, lambda packed: zlib.decompress(base64.b64decode(packed, validate=True))):
        try:
            unpacked = unpack(value)
        except (zlib.error, ValueError):
            continue
        yield unpacked


READERS: dict[bytes, Callable[[Any, bytes], Any]] = {
    b"string": lambda redis, key: [redis.get(key)],
    b"hash": lambda redis, key: [item for pair in redis.hgetall(key).items() for item in pair],
    b"list": lambda redis, key: redis.lrange(key, 0, -1),
    b"set": lambda redis, key: redis.smembers(key),
    b"zset": lambda redis, key: redis.zrange(key, 0, -1),
    b"stream": lambda redis, key: [item for _id, fields in redis.xrange(key) for pair in fields.items() for item in pair],
}
"""How to read everything a key of each type holds."""


def stored_values(redis: Redis) -> Iterator[bytes]:
    """Every key of the database and everything in it: strings, hashes, lists, sets, sorted sets, streams."""
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        assert kind in READERS, f"{key!r} is a {kind!r}, which this test cannot read"
        for value in [key, *READERS[kind](redis, key)]:
            yield from readings(value if isinstance(value, bytes) else str(value).encode())


@pytest.mark.slow
def test_failed_jobs_keep_no_secret(make_app: Callable[..., Flask], own_redis: Any, sandbox_server: Any,
                                    processes: Callable[[Flask, str, str], Processes]) -> None:  # noqa: F811
    """Jobs failing with the webhook URL and the application token in their error, one in a real worker process
    and one in the in-process worker the tests use: no Redis value holds either secret, though the failures
    are recorded (masked), and ``flask --app app failed`` lists both without them."""
    app = make_app(redis_url=own_redis.url)
    rt = app.extensions["taskwarden"]
    redis = Redis.from_url(own_redis.url)
    group = processes(app, own_redis.url, sandbox_server.url)
    in_process = rt.queue().enqueue(FAILING_JOB, failure_ttl=3600)
    run_worker(app)
    by_process = rt.queue().enqueue(FAILING_JOB, failure_ttl=3600)
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    worker = subprocess.run([*flask, "worker", "--burst"], cwd=ROOT, env=group.env, capture_output=True, timeout=120)
    assert worker.returncode == 0, worker.stderr[-3000:]

    for job in (in_process, by_process):
        assert job.get_status(refresh=True) == "failed"
        result = Job.fetch(job.id, connection=redis, serializer=JSONSerializer).latest_result()
        assert result is not None and result.exc_string is not None
        assert "RuntimeError: POST " in result.exc_string and "/rest/1/***/" in result.exc_string  # masked, not lost
    leaks = [value for value in stored_values(redis) if any(secret in value for secret in SECRETS)]
    assert leaks == []
    listed = subprocess.run([*flask, "failed"], cwd=ROOT, env=group.env, capture_output=True, timeout=60)
    assert listed.returncode == 0 and in_process.id.encode() in listed.stdout and by_process.id.encode() in listed.stdout
    assert not any(secret in listed.stdout + listed.stderr + worker.stdout + worker.stderr for secret in SECRETS)
