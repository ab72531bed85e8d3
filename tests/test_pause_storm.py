"""A method paused for its operating time costs no requests: evaluations wait for the reset, then run.

With ``tasks.task.list`` paused, every evaluation would meet the pause; if each one sent the rest of its read
anyway and requeued its tasks at once, a 10-minute pause would spend the portal's whole budget on nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from redis import Redis
from rq.job import Job

import keys
from queueing import EVALUATE_TASK

from .helpers import FORM, event_body, run_worker

TASKS = 20


def queue_events(app: Flask, task_ids: list[int]) -> None:
    client = app.test_client()
    for task_id in task_ids:
        assert client.post("/bitrix24/events", data=event_body(task_id), content_type=FORM).status_code == 200


def run_scheduled_now(app: Flask) -> int:
    """What RQ's scheduler does at the jobs' time: move every scheduled job to its queue."""
    queue = app.extensions["taskwarden"].queue()
    registry = queue.scheduled_job_registry
    job_ids = registry.get_job_ids()
    for job_id in job_ids:
        registry.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer))
    return len(job_ids)


def test_no_request_during_a_pause_and_every_task_after_it(make_app: Callable[..., Flask], sandbox: Any,
                                                          redis: Redis) -> None:
    app = make_app()
    rt = app.extensions["taskwarden"]
    task_ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(TASKS)]
    entries = [sandbox.add_entry(task_id, 40000, "long") for task_id in task_ids]
    redis.set(keys.paused(rt.portal.id, "tasks.task.list"), 1, px=120_000)
    sandbox.clear_requests()
    queue_events(app, task_ids)
    run_worker(app)
    assert sandbox.requests() == []  # not one request while the read is paused
    scheduled = rt.queue().scheduled_job_registry
    assert len(scheduled) >= 1 and all(
        Job.fetch(job_id, connection=redis, serializer=rt.queue().serializer).func_name == EVALUATE_TASK
        for job_id in scheduled.get_job_ids())
    assert {int(task) for task in redis.hkeys(keys.waiting(rt.portal.id))} == set(task_ids)  # none lost
    for _ in range(3):  # a second pass over the queue during the pause changes nothing either
        run_scheduled_now(app)
        run_worker(app)
    assert sandbox.requests() == []
    redis.delete(keys.paused(rt.portal.id, "tasks.task.list"))  # the reset time came
    run_scheduled_now(app)
    run_worker(app)
    assert [sandbox.entry(entry)["SECONDS"] for entry in entries] == [28800] * TASKS
    assert not any(c["method"] == "tasks.task.list" for r in sandbox.requests() if r["status"] != 200
                   for c in r.get("commands", []))
