"""One evaluation pass per portal at a time: a job that meets a running pass hands its task (and the portal's
other queued jobs) over to that pass's follow-up, which takes every waiting task along once the pass ends; the
scheduler queues a follow-up that no pass will."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq.job import JobStatus

import keys
from workers.passes import follow_up, follow_up_if_orphaned

from .helpers import TEST_APP_TOKEN, TEST_REDIS_URL, TEST_SECRET, event_body, poll, run_worker, work_requests

ROOT = Path(__file__).resolve().parent.parent


def post_events(app: Flask, task_ids: list[int]) -> None:
    for task_id in task_ids:
        answer = app.test_client().post("/bitrix24/events", data=event_body(task_id),
                                        content_type="application/x-www-form-urlencoded")
        assert answer.get_json()["status"] == "queued"


def test_a_job_meeting_a_running_pass_hands_over_and_the_follow_up_takes_all(app: Flask, sandbox: Any,
                                                                             redis: Redis) -> None:
    rt = app.extensions["taskwarden"]
    task_ids = [sandbox.add_task(TITLE=f"task {n}") for n in range(3)]
    post_events(app, task_ids)
    redis.set(keys.pass_lock(rt.portal.id), "a pass elsewhere", ex=60)
    sandbox.clear_requests()
    run_worker(app)
    # One job met the pass; the other two were taken off the queue instead of each meeting it in turn.
    assert work_requests(sandbox) == [] and rt.queue().count == 0
    assert {int(t) for t in redis.hkeys(keys.waiting(rt.portal.id))} == set(task_ids)
    redis.delete(keys.pass_lock(rt.portal.id))
    follow_up(rt, rt.portal.id)  # as that pass does once it released the lock
    run_worker(app)
    [read] = work_requests(sandbox)
    assert sorted(int(i) for i in read["commands"][0]["params"]["filter"]["ID"]) == sorted(task_ids)
    assert not redis.hlen(keys.waiting(rt.portal.id))


def test_follow_ups_come_only_after_a_hand_over(make_app: Any, sandbox: Any, redis: Redis) -> None:
    """A pass that leaves tasks waiting with jobs of their own (more than a pass takes) queues nothing more."""
    app = make_app(taskwarden_pass_size=2)
    rt = app.extensions["taskwarden"]
    post_events(app, [sandbox.add_task(TITLE=f"task {n}") for n in range(3)])
    run_worker(app, max_jobs=1)
    assert rt.queue().count == 1 and redis.hlen(keys.waiting(rt.portal.id)) == 1  # the third task's own job
    follow_up(rt, rt.portal.id)
    assert rt.queue().count == 1
    run_worker(app)
    assert not redis.hlen(keys.waiting(rt.portal.id)) and len(work_requests(sandbox)) == 2


def test_follow_ups_chain_until_every_handed_over_task_is_taken(make_app: Any, sandbox: Any, redis: Redis) -> None:
    """More tasks handed over than one pass takes: each follow-up's pass queues the next, until nothing waits."""
    app = make_app(taskwarden_pass_size=2)
    rt = app.extensions["taskwarden"]
    task_ids = [sandbox.add_task(TITLE=f"task {n}") for n in range(5)]
    post_events(app, task_ids)
    redis.set(keys.pass_lock(rt.portal.id), "a pass elsewhere", ex=60)
    run_worker(app)
    assert rt.queue().count == 0 and redis.hlen(keys.waiting(rt.portal.id)) == 5  # every job handed over
    redis.delete(keys.pass_lock(rt.portal.id))
    sandbox.clear_requests()
    follow_up(rt, rt.portal.id)
    run_worker(app)
    reads = work_requests(sandbox)
    assert len(reads) == 3  # passes of 2, 2 and 1
    read_ids = [int(i) for read in reads for i in read["commands"][0]["params"]["filter"]["ID"]]
    assert sorted(read_ids) == sorted(task_ids)
    assert not redis.hlen(keys.waiting(rt.portal.id)) and not redis.exists(keys.handed_over(rt.portal.id))


def test_the_scheduler_queues_a_follow_up_no_pass_will(app: Flask, sandbox: Any, redis: Redis) -> None:
    """The pass the tasks were handed over to never follows up (a failover lost the release of its lock, or its
    job failed for good): once no pass holds the lock, the scheduler's check queues the follow-up, once; a
    follow-up job waiting in the queue gets no twin, one that failed for good gets a successor."""
    rt = app.extensions["taskwarden"]
    task_ids = [sandbox.add_task(TITLE=f"task {n}") for n in range(3)]
    post_events(app, task_ids)
    redis.set(keys.pass_lock(rt.portal.id), "a pass that will never follow up", ex=60)
    run_worker(app)
    assert rt.queue().count == 0 and redis.hlen(keys.waiting(rt.portal.id)) == 3
    assert not follow_up_if_orphaned(rt, rt.portal.id)  # the lock is held: that pass may still follow up
    redis.delete(keys.pass_lock(rt.portal.id))  # expired, and nobody followed up
    assert follow_up_if_orphaned(rt, rt.portal.id)
    [job_id] = rt.queue().job_ids
    assert not follow_up_if_orphaned(rt, rt.portal.id) and rt.queue().count == 1  # its follow-up is on its way
    job = rt.queue().fetch_job(job_id)
    rt.queue().remove(job)
    job.set_status(JobStatus.FAILED)  # as RQ leaves a job that failed for good
    assert follow_up_if_orphaned(rt, rt.portal.id) and rt.queue().count == 1
    sandbox.clear_requests()
    run_worker(app)
    [read] = work_requests(sandbox)
    assert sorted(int(i) for i in read["commands"][0]["params"]["filter"]["ID"]) == sorted(task_ids)
    assert not redis.hlen(keys.waiting(rt.portal.id)) and not redis.exists(keys.handed_over(rt.portal.id))


def test_no_follow_up_while_a_waiting_task_has_a_job_coming(app: Flask, sandbox: Any, redis: Redis) -> None:
    """A job listed for a waiting task (one that stepped back for the budget, say) will run a pass that follows
    up: the scheduler's check leaves it to that pass."""
    rt = app.extensions["taskwarden"]
    post_events(app, [sandbox.add_task(TITLE="task")])
    redis.set(keys.handed_over(rt.portal.id), "some job long finished")
    assert not follow_up_if_orphaned(rt, rt.portal.id) and rt.queue().count == 1
    run_worker(app)
    assert not redis.exists(keys.handed_over(rt.portal.id)) and not redis.hlen(keys.waiting(rt.portal.id))


@pytest.mark.slow
def test_the_scheduler_process_runs_the_check(app: Flask, sandbox: Any, sandbox_server: Any, redis: Redis) -> None:
    """``flask scheduler`` makes the check each tick: tasks handed over to a pass whose lock is gone get their
    follow-up job without any event."""
    rt = app.extensions["taskwarden"]
    post_events(app, [sandbox.add_task(TITLE=f"task {n}") for n in range(2)])
    redis.set(keys.pass_lock(rt.portal.id), "a pass that will never follow up", ex=60)
    run_worker(app)
    assert rt.queue().count == 0 and redis.hlen(keys.waiting(rt.portal.id)) == 2
    redis.delete(keys.pass_lock(rt.portal.id))
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": rt.settings.rules_file, "LOG_FORMAT": "json",
           "SANDBOX_URL": sandbox_server.url, "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN}
    scheduler = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "scheduler"], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        poll(lambda: rt.queue().count == 1, "the scheduler to queue the follow-up", timeout=30, interval=0.1)
    finally:
        scheduler.terminate()
        output = scheduler.communicate(timeout=10)[0]
    assert "scheduler.follow_up_queued" in output
    run_worker(app)
    assert not redis.hlen(keys.waiting(rt.portal.id))
