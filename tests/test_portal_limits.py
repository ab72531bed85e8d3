"""The portal's limits respected and its failures survived: operating time, 500s, 503 storms, gone tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from redis import Redis

import keys
from bitrix import elapsed, tasks
from bitrix.client import Client
from bitrix.errors import OperationTimeLimit
from workers.jobs import evaluate_task

from .conftest import TEST_ADMIN_TOKEN, TEST_REDIS_URL, run_worker
from .helpers import FORM, event_body


def decisions(app: Flask) -> list[dict[str, Any]]:
    return app.test_client().get("/audit", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}).get_json()[
        "decisions"]


class TestOperatingTime:
    def test_method_paused_near_its_limit_others_continue(self, app: Flask, sandbox: Any, redis: Redis) -> None:
        """Once a method nears B24_OPERATING_LIMIT it is paused locally (no request); other methods go on."""
        rt = app.extensions["taskwarden"]
        sandbox.configure(operating_costs={"tasks.task.get": 100.0})  # 480 s limit: the 5th call nears it
        task_id = sandbox.add_task(TITLE="t")
        with pytest.raises(OperationTimeLimit) as caught:
            for _ in range(10):
                rt.client.run(tasks.get(task_id))
        sent = [r for r in sandbox.requests() if r["method"] == "tasks.task.get"]
        assert len(sent) == 5 and all(r["status"] == 200 for r in sent)  # paused before the portal refused
        assert caught.value.reset_at is not None and caught.value.reset_at > time.time() + 500
        ttl = redis.pttl(keys.paused(rt.portal.id, "tasks.task.get"))
        assert 500_000 < ttl <= 600_000
        assert elapsed.entries_from_wire(rt.client.run(elapsed.list_for_task(task_id))) == []

    def test_portal_429_pauses_the_method(self, app: Flask, sandbox: Any, redis: Redis) -> None:
        """An OPERATION_TIME_LIMIT answer pauses that method: the next call sends nothing."""
        rt = app.extensions["taskwarden"]
        sandbox.fault("tasks.task.get", status=429, error="OPERATION_TIME_LIMIT",
                      description="Method is blocked due to operation time limit.", times=1)
        for _ in range(2):
            with pytest.raises(OperationTimeLimit):
                rt.client.run(tasks.get(1))
        assert len(sandbox.requests()) == 1
        assert redis.pttl(keys.paused(rt.portal.id, "tasks.task.get")) > 0

    def test_paused_inside_batch_only_that_command(self, app: Flask, sandbox: Any, redis: Redis) -> None:
        """In a batch, commands of a paused method come back as errors; the others are sent and answered."""
        rt = app.extensions["taskwarden"]
        redis.set(keys.paused(rt.portal.id, "task.elapseditem.getlist"), 1, px=60_000)
        task_id = sandbox.add_task(TITLE="t")
        result = rt.client.batch({"t": tasks.get(task_id), "e": elapsed.list_for_task(task_id)})
        assert "t" in result.results and isinstance(result.errors["e"], OperationTimeLimit)
        [sent] = sandbox.requests()
        assert [c["method"] for c in sent["commands"]] == ["tasks.task.get"]

    def test_evaluation_comes_back_at_reset(self, app: Flask, sandbox: Any, redis: Redis) -> None:
        """A job that meets a paused method is scheduled again for the reset time, keeping its retries."""
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t")
        redis.set(keys.paused(rt.portal.id, "task.elapseditem.getlist"), 1, px=120_000)
        redis.hset(keys.waiting(rt.portal.id), str(task_id), "direct")  # as queueing an evaluation does
        result = evaluate_task(rt.portal.id, task_id)
        assert result == {"status": "paused", "method": "task.elapseditem.getlist"}
        [job_id] = rt.queue().scheduled_job_registry.get_job_ids()
        job = rt.queue().fetch_job(job_id)
        assert job is not None and job.kwargs["task_id"] == task_id


class TestFailuresSurvived:
    def test_500s_retried_and_evaluation_completes(self, app: Flask, sandbox: Any) -> None:
        """Two 500 answers to the read batch are retried with backoff; the entry is then capped."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 40000, "x")
        sandbox.fault("batch", status=500, error="INTERNAL_SERVER_ERROR", times=2)
        app.test_client().post("/bitrix24/events", data=event_body(task_id), content_type=FORM)
        run_worker(app)
        assert sandbox.entry(entry_id)["SECONDS"] == 28800
        assert [r["status"] for r in sandbox.requests()] == [500, 500, 200, 200]

    def test_503_storm_slows_everyone_down(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Four clients during a 3-second storm of 503s send about rate x seconds requests, not more."""
        app = make_app(b24_rate_limit=4, b24_rate_burst=4)
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t")
        sandbox.fault("tasks.task.get", status=503, error="QUERY_LIMIT_EXCEEDED", times=0)
        clients = [Client(rt.portal, Redis.from_url(TEST_REDIS_URL)) for _ in range(4)]
        threads = [threading.Thread(target=c.run, args=(tasks.get(task_id),)) for c in clients]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(3.0)  # the storm's length is the point of this test, not a synchronisation
        sandbox.clear_faults()
        storm = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=30)
        refused = [r for r in sandbox.requests() if r["status"] == 503]
        assert len(refused) <= storm * 4 + len(clients) + 2
        assert sum(1 for r in sandbox.requests() if r["status"] == 200) == len(clients)

    def test_gone_task_recorded_once_not_retried(self, app: Flask, sandbox: Any) -> None:
        """An event for a task the portal no longer shows is audited once and the job finishes."""
        app.test_client().post("/bitrix24/events", data=event_body(424242), content_type=FORM)
        run_worker(app)
        assert [(d["entity"], d["outcome"]) for d in decisions(app)] == [("task", "error")]
        assert len(sandbox.requests()) == 1
        assert len(app.extensions["taskwarden"].queue().failed_job_registry) == 0


class TestFailedJobs:
    def test_listed_with_reason_and_requeued(self, app: Flask, runner: Any) -> None:
        """A job that failed for good shows in `failed` with its reason, and `failed --requeue` puts it back."""
        queue = app.extensions["taskwarden"].queue()
        job = queue.enqueue(evaluate_task, kwargs={"portal_id": "not-our-portal", "task_id": 1})
        run_worker(app)
        listing = runner.invoke(args=["failed"]).output
        assert job.id in listing and "LookupError: unknown portal 'not-our-portal'" in listing
        assert runner.invoke(args=["failed", "--requeue"]).output.startswith("requeued 1 job(s)")
        assert queue.job_ids == [job.id]
