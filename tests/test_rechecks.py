"""Our own writes' echoes: the ONTASKUPDATE a deadline write raises coalesces into one delayed re-read of every
task the pass wrote, which still sees whatever a user changed meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from redis import Redis

import audit
import keys
from queueing import recheck_event_id
from workers import jobs

from .helpers import event_body, run_scheduled, run_worker, work_requests

DEADLINE_RULES = """
timezone: Europe/Berlin
rules:
  - name: default-deadline
    policy: deadline
    params: {set_if_missing: {workdays: 2, at: "18:00"}}
"""
CAP_RULES = """
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800, action: clamp}
"""
TASKS = 60


@pytest.fixture
def deadline_app(make_app: Any) -> Flask:
    return make_app(DEADLINE_RULES)


def post_event(app: Flask, task_id: int, ts: int = 1766047124) -> str:
    answer = app.test_client().post("/bitrix24/events", data=event_body(task_id, ts=ts),
                                    content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return str(answer.get_json()["status"])


def scheduled_rechecks(app: Flask) -> list[Any]:
    rt = app.extensions["taskwarden"]
    registry = rt.queue().scheduled_job_registry
    return [job for job in (rt.queue().fetch_job(job_id) for job_id in registry.get_job_ids())
            if job is not None and job.func_name == "workers.jobs.recheck_tasks"]


class TestRecheck:
    def test_echoes_coalesce_and_the_recheck_sees_a_user_change(self, deadline_app: Flask, sandbox: Any,
                                                               redis: Redis) -> None:
        rt = deadline_app.extensions["taskwarden"]
        task_ids = [sandbox.add_task(TITLE=f"no deadline {n}") for n in range(TASKS)]
        for task_id in task_ids:
            assert post_event(deadline_app, task_id) == "queued"
        run_worker(deadline_app)
        assert all(sandbox.task(task_id)["DEADLINE"] for task_id in task_ids)
        [recheck] = scheduled_rechecks(deadline_app)
        assert sorted(recheck.kwargs["task_ids"]) == sorted(task_ids)
        assert redis.get(keys.pending(rt.portal.id, task_ids[0])) == recheck_event_id(task_ids[0]).encode()

        # The portal's echo of each write, and a user clearing one deadline again: all coalesce.
        assert {post_event(deadline_app, task_id, ts=1766047200) for task_id in task_ids} == {"duplicate"}
        undone = task_ids[7]
        sandbox.update_task(undone, DEADLINE=None)
        assert post_event(deadline_app, undone, ts=1766047300) == "duplicate"
        assert rt.queue().count == 0 and not redis.hlen(keys.waiting(rt.portal.id))

        sandbox.clear_requests()
        run_scheduled(deadline_app)
        requests = work_requests(sandbox)
        assert len(requests) == 2, [r["method"] for r in requests]  # one read of all 60, one write
        assert sandbox.task(undone)["DEADLINE"]
        [again] = [r for r in audit.query(rt.redis, rt.portal.id, task=undone) if r["cause"] == "recheck"]
        assert again["outcome"] == "changed"
        # That write is rechecked in turn; the others are done, and their next event queues as usual.
        assert [job.kwargs["task_ids"] for job in scheduled_rechecks(deadline_app)] == [[undone]]
        assert post_event(deadline_app, task_ids[0], ts=1766047400) == "queued"

    def test_the_recheck_comes_after_the_configured_delay_or_not_at_all(self, make_app: Any, sandbox: Any) -> None:
        app = make_app(DEADLINE_RULES, taskwarden_recheck_seconds=45)
        post_event(app, sandbox.add_task(TITLE="no deadline"))
        run_worker(app)
        [recheck] = scheduled_rechecks(app)
        due = app.extensions["taskwarden"].queue().scheduled_job_registry.get_scheduled_time(recheck)
        assert 44 <= (due - recheck.created_at).total_seconds() <= 46

        off = make_app(DEADLINE_RULES, taskwarden_recheck_seconds=0)
        task_id = sandbox.add_task(TITLE="no deadline either")
        off.extensions["taskwarden"].redis.flushdb()
        assert post_event(off, task_id) == "queued"
        run_worker(off)
        assert sandbox.task(task_id)["DEADLINE"] and scheduled_rechecks(off) == []
        assert post_event(off, task_id, ts=1766047200) == "queued"  # its echo is evaluated as any event

    def test_writes_that_raise_no_event_are_not_rechecked(self, make_app: Any, sandbox: Any) -> None:
        app = make_app(CAP_RULES)
        task_id = sandbox.add_task(TITLE="long day")
        entry_id = sandbox.add_entry(task_id, 36000, "client call")
        assert post_event(app, task_id) == "queued"
        run_worker(app)
        assert int(sandbox.entry(entry_id)["SECONDS"]) == 28800
        assert scheduled_rechecks(app) == []

    def test_a_recheck_that_finds_its_task_busy_gives_the_others_jobs(self, deadline_app: Flask, sandbox: Any,
                                                                      redis: Redis, monkeypatch: Any) -> None:
        rt = deadline_app.extensions["taskwarden"]
        task_ids = [sandbox.add_task(TITLE=f"no deadline {n}") for n in range(3)]
        for task_id in task_ids:
            post_event(deadline_app, task_id)
        run_worker(deadline_app)
        assert all(sandbox.task(task_id)["DEADLINE"] for task_id in task_ids)
        [recheck] = scheduled_rechecks(deadline_app)
        own = recheck.kwargs["task_ids"][0]
        monkeypatch.setattr(jobs, "LOCK_WAIT_SECONDS", 0.1)
        redis.set(keys.task_lock(rt.portal.id, own), "another evaluation", ex=60)
        run_scheduled(deadline_app, max_jobs=1)
        assert recheck.get_status(refresh=True) == "finished" and recheck.return_value() == {"status": "busy"}
        # Every task of the recheck is waiting again, with a job of its own, and still pending.
        waiting = {int(task) for task in redis.hkeys(keys.waiting(rt.portal.id))}
        assert waiting == set(task_ids)
        assert all(redis.exists(keys.pending(rt.portal.id, task_id)) for task_id in task_ids)
        redis.delete(keys.task_lock(rt.portal.id, own))
        sandbox.clear_requests()
        run_scheduled(deadline_app)
        assert not redis.hlen(keys.waiting(rt.portal.id))
        [read] = work_requests(sandbox)  # the three together
        assert sorted(int(i) for i in read["commands"][0]["params"]["filter"]["ID"]) == sorted(task_ids)
