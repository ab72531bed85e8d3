"""What tests share: the test portal's constants, event bodies, running queued jobs, and polling with a
deadline (never a bare sleep)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask

TEST_REDIS_URL = os.environ.get("TASKWARDEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
TEST_SECRET = "s3cr3t-webhook-code-for-tests"
TEST_APP_TOKEN = "app-token-for-tests-0123456789"
TEST_MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
TEST_ADMIN_TOKEN = "admin-token-for-tests"
SAMPLES = Path(__file__).parent / "samples"

DEFAULT_RULES = """
timezone: Europe/Berlin
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800, action: clamp, note: " (capped at 8h)"}
"""
FORM = "application/x-www-form-urlencoded"


def event_body(task_id: int | str = 42, *, event: str = "ONTASKUPDATE", token: str | None = TEST_APP_TOKEN,
               member_id: str = TEST_MEMBER_ID, ts: int = 1766047124, before: Any = None) -> bytes:
    """A form body shaped exactly like a Bitrix24 outgoing-webhook task event."""
    pairs: list[tuple[str, Any]] = [("event", event), ("event_handler_id", "27")]
    if event == "ONTASKADD":
        pairs += [("data[FIELDS_BEFORE]", "undefined"), ("data[FIELDS_AFTER][ID]", task_id)]
    else:
        pairs += [("data[FIELDS_BEFORE][ID]", before if before is not None else task_id),
                  ("data[FIELDS_AFTER][ID]", task_id)]
    pairs += [("data[IS_ACCESSIBLE_BEFORE]", "undefined"), ("data[IS_ACCESSIBLE_AFTER]", "undefined"), ("ts", ts),
              ("auth[domain]", "example.bitrix24.com"), ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
              ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[member_id]", member_id)]
    if token is not None:
        pairs.append(("auth[application_token]", token))
    return urlencode(pairs).encode()


MANIFEST = "task.elapseditem.getmanifest"


def work_requests(sandbox: Any, since: int = 0) -> list[dict[str, Any]]:
    """The requests the portal served, less the once-a-day manifest question (``workers.capabilities``)."""
    return [r for r in sandbox.requests(since) if r["method"] != MANIFEST]


def poll(check: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_worker(app: Flask, max_jobs: int | None = None) -> None:
    """Run queued jobs in this process until the queues are empty (RQ's SimpleWorker, burst mode)."""
    from rq.serializers import JSONSerializer

    import queueing
    import runtime
    from workers.worker import TaskwardenSimpleWorker

    rt = app.extensions["taskwarden"]
    runtime.install(rt)  # as the worker command does: jobs find the runtime there
    queues = [rt.queue(name) for name in queueing.QUEUES]
    TaskwardenSimpleWorker(queues, connection=rt.redis, serializer=JSONSerializer).work(burst=True,
                                                                                         max_jobs=max_jobs)


def run_scheduled(app: Flask, max_jobs: int | None = None) -> None:
    """Queue every scheduled job now, whenever it was due (a recheck after our writes, a job stepping back),
    and run the queues empty (or ``max_jobs`` of them)."""
    from rq.job import Job

    import queueing

    rt = app.extensions["taskwarden"]
    for name in queueing.QUEUES:
        queue = rt.queue(name)
        registry = queue.scheduled_job_registry
        for job_id in registry.get_job_ids():
            registry.remove(job_id)
            queue.enqueue_job(Job.fetch(job_id, connection=rt.redis, serializer=queue.serializer))
    run_worker(app, max_jobs=max_jobs)
