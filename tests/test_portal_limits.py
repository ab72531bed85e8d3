"""The portal's limits respected and its failures survived: operating time, 500s, 503 storms, gone tasks."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
from flask import Flask
from redis import Redis

import keys
import runtime
from bitrix import elapsed, tasks
from bitrix.client import Client
from bitrix.errors import OperationTimeLimit
from workers.jobs import evaluate_task

from .helpers import FORM, TEST_ADMIN_TOKEN, TEST_REDIS_URL, event_body, run_worker, work_requests


class Refused(Exception):
    """Raised instead of sleeping: the shared budget told a client to wait ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class BudgetSleep:
    """The clients' ``sleep``, which never sleeps: while ``refusing``, a wait the budget asks for is refused
    (``Refused``); otherwise it passes on the bucket's own clock, its arrival time moved back by the wait,
    as that much more of Redis' clock would do. Every wait asked for is recorded."""

    def __init__(self, redis: Redis, portal_id: str) -> None:
        self.refusing = True
        self.waits: list[float] = []
        self._redis = redis
        self._key = keys.budget(portal_id)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.refusing:
            raise Refused(seconds)
        self._redis.incrbyfloat(self._key, -seconds * 1000)  # atomic, and keeps the key's TTL


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
        # paused until the window's reset the portal reported (not a default pause), and the error says so
        stored = redis.hget(keys.operating(rt.portal.id), "tasks.task.get")
        assert stored is not None
        reported = json.loads(stored)["reset_at"]
        assert redis.pexpiretime(keys.paused(rt.portal.id, "tasks.task.get")) == int(reported * 1000)
        assert caught.value.reset_at == pytest.approx(reported, abs=1)
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
        runtime.install(rt)  # as the worker command does
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
        assert [r["status"] for r in work_requests(sandbox)] == [500, 500, 200, 200]

    def test_503_storm_slows_everyone_down(self, app: Flask, sandbox: Any) -> None:
        """Four clients in a storm of 503s: the first 503 fills the shared budget, so no client sends a
        second request (each is told to wait instead), and a fifth, which saw no 503, sends none. After the
        storm the five go one per drain interval, each waiting for its turn, and all get their answer."""
        rt = app.extensions["taskwarden"]
        portal = dataclasses.replace(rt.portal, rate=0.01, burst=20)  # 100 s per request: no refill meanwhile
        interval = 1 / portal.rate
        task_id = sandbox.add_task(TITLE="t")
        sandbox.fault("tasks.task.get", status=503, error="QUERY_LIMIT_EXCEEDED", times=0)  # until cleared
        sleep = BudgetSleep(rt.redis, portal.id)
        connections = [Redis.from_url(TEST_REDIS_URL) for _ in range(5)]  # one each, as in separate processes
        clients = [Client(portal, connection, sleep=sleep) for connection in connections]
        outcomes: list[BaseException | None] = [None] * 4

        def run(index: int) -> None:
            try:
                clients[index].run(tasks.get(task_id))
            except BaseException as error:  # the outcome is what the test asserts
                outcomes[index] = error

        try:
            threads = [threading.Thread(target=run, args=(index,)) for index in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(thread.is_alive() for thread in threads)
            with pytest.raises(Refused):
                clients[4].run(tasks.get(task_id))
            storm = sandbox.requests()
            assert all(isinstance(outcome, Refused) for outcome in outcomes)
            assert 1 <= len(storm) <= 4 and all(r["status"] == 503 for r in storm)
            assert max(client.stats.requests for client in clients) <= 1  # none sent twice
            assert clients[4].stats.requests == 0
            assert sum(client.stats.requests for client in clients) == len(storm)
            assert all(0 < seconds <= interval for seconds in sleep.waits)

            sandbox.clear_faults()
            sandbox.clear_requests()
            sleep.refusing = False
            sleep.waits.clear()
            for client in clients:  # one at a time, so each turn is the bucket's next drain
                assert client.run(tasks.get(task_id))["task"]["id"] == str(task_id)
            assert [r["status"] for r in sandbox.requests()] == [200] * 5
            assert len(sleep.waits) == 5 and all(0 < seconds <= interval for seconds in sleep.waits)
        finally:
            for connection in connections:
                connection.close()

    def test_gone_task_recorded_once_not_retried(self, app: Flask, sandbox: Any) -> None:
        """An event for a task the portal no longer shows is audited once and the job finishes."""
        app.test_client().post("/bitrix24/events", data=event_body(424242), content_type=FORM)
        run_worker(app)
        assert [(d["entity"], d["outcome"]) for d in decisions(app)] == [("task", "error")]
        assert len(work_requests(sandbox)) == 1
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
