"""What the operator sees: /metrics (correct across processes), the RQ dashboard behind the admin token."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq.executions import Execution

from logging_setup import capture_output
from queueing import enqueue_evaluation
from workers.jobs import evaluate_task

from .helpers import (
    DEFAULT_RULES,
    FORM,
    TEST_ADMIN_TOKEN,
    TEST_APP_TOKEN,
    TEST_REDIS_URL,
    TEST_SECRET,
    event_body,
    poll,
    run_worker,
)

ROOT = Path(__file__).parent.parent


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))).strip(",") == wanted:
            return float(match[3])
    return None


class TestMetrics:
    def test_content_type_has_one_charset(self, client: Any) -> None:
        """Prometheus' text format, version 0.0.4, with exactly one charset parameter."""
        assert client.get("/metrics").headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"

    def test_counters_and_gauges(self, app: Flask, sandbox: Any) -> None:
        """Events, evaluations, decisions, REST requests and queue gauges appear with the right values."""
        client = app.test_client()
        task_id = sandbox.add_task(TITLE="t")
        sandbox.add_entry(task_id, 40000, "x")
        client.post("/bitrix24/events", data=event_body(task_id), content_type=FORM)
        client.post("/bitrix24/events", data=event_body(task_id, ts=2), content_type=FORM)
        client.post("/bitrix24/events", data=event_body(task_id, token="bad"), content_type=FORM)
        client.post("/bitrix24/events", data=event_body(99), content_type=FORM)  # a task the portal lacks
        assert metric(client.get("/metrics").get_data(as_text=True), "taskwarden_queue_depth",
                      queue="taskwarden-evaluations") == 2
        run_worker(app, max_jobs=1)  # one job evaluates both waiting tasks in one shared pass

        def scraped() -> str | None:
            text = client.get("/metrics").get_data(as_text=True)
            return text if metric(text, "taskwarden_events_total", outcome="queued") == 2 else None

        text = poll(scraped, "the web counters to be flushed", timeout=10, interval=0.2)
        assert metric(text, "taskwarden_events_total", outcome="duplicate") == 1
        assert metric(text, "taskwarden_events_total", outcome="rejected") == 1
        assert metric(text, "taskwarden_evaluations_total", outcome="done") == 2
        assert metric(text, "taskwarden_decisions_total", rule="cap-time-entries", outcome="changed") == 1
        assert metric(text, "taskwarden_decisions_total", rule="*", outcome="error") == 1  # task 99 is not there
        assert metric(text, "taskwarden_rest_requests_total", method="batch", code="ok") == 2
        assert metric(text, "taskwarden_queue_depth", queue="taskwarden-evaluations") == 0  # 99's job taken off
        assert metric(text, "taskwarden_failed_jobs", queue="taskwarden-evaluations") == 0
        assert "taskwarden_lock_violations" in text and "taskwarden_last_sweep_timestamp_seconds" in text

    @pytest.mark.slow
    def test_counted_across_worker_processes(self, app: Flask, sandbox: Any, sandbox_server: Any,
                                             redis: Redis) -> None:
        """Evaluations run by two worker processes (each job in its own work horse) all add up."""
        rt = app.extensions["taskwarden"]
        for task_id in [sandbox.add_task(TITLE=f"t{i}") for i in range(12)]:
            enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
        settings = rt.settings
        env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": settings.rules_file, "TASKWARDEN_PASS_SIZE": "3",
               "SANDBOX_URL": sandbox_server.url, "SANDBOX_SECRET": TEST_SECRET, "LOG_LEVEL": "WARNING",
               "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "SPOOL_DIR": settings.spool_dir}
        procs = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        for proc in procs:
            proc.wait(timeout=120)
        text = app.test_client().get("/metrics").get_data(as_text=True)
        # Passes of 3 tasks, run by work horses of two processes: every task counted once.
        assert metric(text, "taskwarden_evaluations_total", outcome="done") == 12
        assert metric(text, "taskwarden_rest_requests_total", method="batch", code="ok") == 4  # one read per pass

    def test_no_secret_in_labels(self, app: Flask, sandbox: Any) -> None:
        """Error codes become labels, but no label or value carries the webhook secret or the token."""
        sandbox.fault("tasks.task.get", status=401, error="INVALID_CREDENTIALS", times=1)
        with pytest.raises(Exception, match="INVALID_CREDENTIALS"):
            app.extensions["taskwarden"].client.call("tasks.task.get", {"taskId": 1})
        import metrics

        metrics.flush(app.extensions["taskwarden"].redis)
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert metric(text, "taskwarden_rest_requests_total", method="tasks.task.get", code="INVALID_CREDENTIALS") == 1
        assert TEST_SECRET not in text and TEST_APP_TOKEN not in text


class TestDashboard:
    def populate(self, app: Flask, sandbox: Any) -> dict[str, str]:
        """One job in each registry: queued, started, finished, failed, scheduled."""
        rt = app.extensions["taskwarden"]
        queue = rt.queue()
        done = enqueue_evaluation(queue, rt.portal.id, sandbox.add_task(TITLE="t"))
        failed = queue.enqueue(evaluate_task, kwargs={"portal_id": "elsewhere", "task_id": 1})
        run_worker(app)
        queued = enqueue_evaluation(queue, rt.portal.id, 2)
        scheduled = queue.enqueue_in(dt.timedelta(hours=1), evaluate_task, kwargs={"portal_id": rt.portal.id,
                                                                                   "task_id": 3})
        started = queue.enqueue(evaluate_task, kwargs={"portal_id": rt.portal.id, "task_id": 4})
        queue.remove(started)
        with rt.redis.pipeline() as pipe:  # as a worker marks a job it has begun (RQ 2.x executions)
            Execution.create(started, ttl=600, pipeline=pipe)
            pipe.execute()
        return {"queued": queued.id, "started": started.id, "finished": done.id, "failed": failed.id,
                "scheduled": scheduled.id}

    def test_renders_for_the_admin_only(self, app: Flask, sandbox: Any) -> None:
        """/rq and its data answer the admin token (bearer or basic) and nobody else."""
        jobs = self.populate(app, sandbox)
        client = app.test_client()
        bearer = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{TEST_ADMIN_TOKEN}".encode()).decode()}
        page = client.get("/rq/", headers=basic)
        assert page.status_code == 200 and b"/rq/static/" in page.data  # the dashboard, under our prefix
        for registry, job_id in jobs.items():
            answer = client.get(f"/rq/0/data/jobs/taskwarden-evaluations/{registry}/50/asc/1.json", headers=bearer)
            assert answer.status_code == 200, registry
            assert job_id in {job["id"] for job in answer.get_json()["jobs"]}, registry
        assert client.get("/rq/0/view/jobs/taskwarden-evaluations/failed/8/asc/1", headers=bearer).status_code == 200
        refused = client.get("/rq/")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert client.get("/rq/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post(f"/rq/job/{jobs['failed']}/delete").status_code == 401

    def test_absent_without_admin_token(self, make_app: Any) -> None:
        """Without TASKWARDEN_ADMIN_TOKEN the dashboard does not exist (404)."""
        app = make_app(taskwarden_admin_token=None)
        assert app.test_client().get("/rq/", headers={"Authorization": "Bearer x"}).status_code == 404


class TestStatus:
    def test_one_screen_and_json(self, app: Flask, runner: Any, sandbox: Any, redis: Redis) -> None:
        """status shows queues, budget, paused methods, sweeps with cursors, failures and recent decisions."""
        import keys
        from workers.sweeps import run_sweep

        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t")
        sandbox.add_entry(task_id, 40000, "x")
        run_sweep(rt, "entries")
        rt.queue().enqueue(evaluate_task, kwargs={"portal_id": "elsewhere", "task_id": 1})
        run_worker(app)
        enqueue_evaluation(rt.queue(), rt.portal.id, 5)
        redis.set(keys.paused(rt.portal.id, "tasks.task.list"), 1, px=120_000)
        text = runner.invoke(args=["status"]).output
        assert "taskwarden-evaluations" in text and "queued     1" in text and "failed    1" in text
        assert "paused tasks.task.list until" in text
        assert "entries" in text and "last_id" in text
        assert "LookupError: unknown portal 'elsewhere'" in text
        assert "Decisions in the last hour: changed 1" in text
        data = json.loads(runner.invoke(args=["status", "--json"]).output)
        assert data["budget"]["tokens_left"] <= data["budget"]["burst"] == 50
        assert data["decisions_last_hour"] == {"changed": 1}
        assert [s["kind"] for s in data["sweeps"]] == ["entries", "tasks", "full"]


class TestRulesDigest:
    def test_worker_with_other_rules_says_so(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Each job carries the digest of the rules it was queued with; a worker running other rules acts on its
        own, logs it loudly, counts it, and `status` shows the difference."""
        web = make_app()
        worker = make_app(DEFAULT_RULES.replace("28800", "3600"))
        task_id = sandbox.add_task(TITLE="t")
        web.test_client().post("/bitrix24/events", data=event_body(task_id), content_type=FORM)
        with capture_output() as lines:
            run_worker(worker)
        [logged] = [json.loads(line) for line in lines.getvalue().splitlines() if '"rules.mismatch"' in line]
        web_rules, worker_rules = web.extensions["taskwarden"].rules.digest, worker.extensions["taskwarden"].rules.digest
        assert (logged["queued_with"], logged["worker_rules"], logged["level"]) == (web_rules, worker_rules, "error")
        status = json.loads(web.test_cli_runner().invoke(args=["status", "--json"]).stdout)["rules"]
        assert status["mismatches"] == {f"{web_rules}->{worker_rules}": 1} and not status["all_same"]
        assert "DIFFERENT RULES RUNNING" in web.test_cli_runner().invoke(args=["status"]).stdout

    def test_same_rules_no_alarm(self, app: Flask, sandbox: Any) -> None:
        app.test_client().post("/bitrix24/events", data=event_body(sandbox.add_task(TITLE="t")), content_type=FORM)
        run_worker(app)
        status = json.loads(app.test_cli_runner().invoke(args=["status", "--json"]).stdout)["rules"]
        assert status["all_same"] and status["mismatches"] == {}
        assert set(status["running"].values()) == {app.extensions["taskwarden"].rules.digest}
