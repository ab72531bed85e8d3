"""One evaluation pass per portal at a time: a job that meets a running pass leaves its task waiting and comes
back, and the next pass takes every waiting task along."""

from __future__ import annotations

from typing import Any

from flask import Flask
from redis import Redis

import keys

from .helpers import event_body, run_scheduled, run_worker, work_requests


def test_a_job_meeting_a_running_pass_steps_back_and_the_next_pass_takes_all(app: Flask, sandbox: Any,
                                                                             redis: Redis) -> None:
    rt = app.extensions["taskwarden"]
    task_ids = [sandbox.add_task(TITLE=f"task {n}") for n in range(3)]
    client = app.test_client()
    for task_id in task_ids:
        answer = client.post("/bitrix24/events", data=event_body(task_id),
                             content_type="application/x-www-form-urlencoded")
        assert answer.get_json()["status"] == "queued"
    redis.set(keys.pass_lock(rt.portal.id), "a pass elsewhere", ex=60)
    sandbox.clear_requests()
    run_worker(app, max_jobs=1)
    assert work_requests(sandbox) == []
    # Its task still waits (under the job that comes back), as do the others.
    assert {int(t) for t in redis.hkeys(keys.waiting(rt.portal.id))} == set(task_ids)
    assert rt.queue().scheduled_job_registry.count == 1
    redis.delete(keys.pass_lock(rt.portal.id))
    run_scheduled(app)
    [read] = work_requests(sandbox)
    assert sorted(int(i) for i in read["commands"][0]["params"]["filter"]["ID"]) == sorted(task_ids)
    assert not redis.hlen(keys.waiting(rt.portal.id))


def test_a_task_the_running_pass_took_along_is_not_evaluated_again(app: Flask, sandbox: Any, redis: Redis) -> None:
    rt = app.extensions["taskwarden"]
    task_id = sandbox.add_task(TITLE="taken along")
    app.test_client().post("/bitrix24/events", data=event_body(task_id),
                           content_type="application/x-www-form-urlencoded")
    redis.set(keys.pass_lock(rt.portal.id), "a pass elsewhere", ex=60)
    run_worker(app)
    [back] = [rt.queue().fetch_job(job_id) for job_id in rt.queue().scheduled_job_registry.get_job_ids()]
    redis.hdel(keys.waiting(rt.portal.id), str(task_id))  # that pass claims it before it ends
    redis.delete(keys.pass_lock(rt.portal.id))
    sandbox.clear_requests()
    run_scheduled(app)
    assert back.return_value(refresh=True) == {"status": "coalesced"}
    assert work_requests(sandbox) == []
