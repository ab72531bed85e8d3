"""``POST /bitrix24/events``: every answer in the contract's table, coalescing, and no 5xx for any input."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

import keys
from logging_setup import capture_output

from .helpers import FORM, TEST_MEMBER_ID, event_body, poll, run_worker

URL = "/bitrix24/events"


def queue_length(app: Flask) -> int:
    return len(app.extensions["taskwarden"].queue())


class TestAnswers:
    @pytest.mark.parametrize(("method", "content_type", "body", "status", "error"), [
        ("POST", FORM, event_body(token=None), 401, "unauthorized"),
        ("POST", FORM, event_body(token="wrong-token"), 401, "unauthorized"),
        ("POST", FORM, event_body(member_id="ffffffffffffffffffffffffffffffff"), 401, "unauthorized"),
        ("POST", FORM, b"garbage-without-structure", 400, "malformed"),
        ("POST", FORM, b"\xff\xfe\x00", 400, "malformed"),
        ("POST", FORM, event_body("undefined", before="undefined"), 400, "malformed"),
        ("POST", FORM, event_body() + b"&pad=" + b"x" * 70_000, 413, "too_large"),
        ("POST", "text/plain", event_body(), 415, "unsupported_media_type"),
        ("POST", None, event_body(), 415, "unsupported_media_type"),
        ("POST", "application/json", b"{broken", 400, "malformed"),
        ("GET", None, b"", 405, "method_not_allowed"),
        ("PUT", FORM, event_body(), 405, "method_not_allowed"),
    ])
    def test_bad_input_table(self, make_app: Callable[..., Flask], method: str, content_type: str | None,
                             body: bytes, status: int, error: str) -> None:
        """Each bad request gets its exact status and a JSON error; nothing is queued."""
        app = make_app(b24_member_id=TEST_MEMBER_ID)
        headers = {"Content-Type": content_type} if content_type else {}
        answer = app.test_client().open(URL, method=method, data=body, headers=headers)
        assert answer.status_code == status
        assert answer.get_json()["error"] == error
        assert queue_length(app) == 0

    @pytest.mark.parametrize(("task_id", "message"), [
        ("abc", "task id is not a number: data[FIELDS_AFTER][ID] must be a positive integer"),
        ("-5", "task id is not a number: data[FIELDS_AFTER][ID] must be a positive integer"),
        ("undefined", "task id is not a number: data[FIELDS_AFTER][ID] must be a positive integer"),
    ])
    def test_task_id_not_a_number_says_so(self, client: Any, app: Flask, task_id: str, message: str) -> None:
        answer = client.post(URL, data=event_body(task_id), content_type=FORM)
        assert (answer.status_code, answer.get_json()["message"]) == (400, message)
        assert queue_length(app) == 0

    def test_queued(self, client: Any, app: Flask, redis: Redis) -> None:
        """A verified event queues one evaluation and answers with its event id."""
        answer = client.post(URL, data=event_body(42), content_type=FORM)
        assert answer.status_code == 200
        assert answer.get_json() == {"status": "queued", "event_id": "ONTASKUPDATE:42:1766047124:27", "jobs": 1}
        assert queue_length(app) == 1
        job = app.extensions["taskwarden"].queue().jobs[0]
        assert job.kwargs["task_id"] == 42 and job.kwargs["event_name"] == "ONTASKUPDATE"

    def test_trailing_slash_and_json(self, client: Any) -> None:
        """The trailing slash is accepted, and the same structure as JSON is too."""
        body = {"event": "ONTASKADD", "data": {"FIELDS_AFTER": {"ID": "7"}},
                "auth": {"application_token": "app-token-for-tests-0123456789"}}
        answer = client.post(URL + "/", json=body)
        assert answer.status_code == 200 and answer.get_json()["status"] == "queued"

    def test_ignored_event(self, client: Any, app: Flask) -> None:
        """An event no rule subscribes to is answered ``ignored`` and queues nothing."""
        answer = client.post(URL, data=event_body(5, event="ONTASKCOMMENTADD"), content_type=FORM)
        assert answer.status_code == 200 and answer.get_json()["status"] == "ignored"
        assert queue_length(app) == 0

    def test_ignored_still_needs_the_token(self, client: Any) -> None:
        """Unsubscribed events are verified too."""
        answer = client.post(URL, data=event_body(5, event="ONAPPTEST", token="nope"), content_type=FORM)
        assert answer.status_code == 401

    def test_redis_down_is_not_a_500(self, make_app: Callable[..., Flask], tmp_path: Any) -> None:
        """Redis unreachable: 202 spooled; spool unwritable as well: 503 with a reason. Never a 500."""
        app = make_app(redis_url="redis://127.0.0.1:1/0")
        answer = app.test_client().post(URL, data=event_body(), content_type=FORM)
        assert answer.status_code == 202 and answer.get_json()["status"] == "spooled"
        blocked = tmp_path / "not-a-dir"
        blocked.write_text("a file where the spool directory should be")
        app = make_app(redis_url="redis://127.0.0.1:1/0", spool_dir=str(blocked / "spool"))
        answer = app.test_client().post(URL, data=event_body(), content_type=FORM)
        assert answer.status_code == 503 and answer.get_json()["status"] == "unavailable"

    def test_chunked_body_and_media_type_parameters(self, client: Any) -> None:
        """A chunked body (no Content-Length) is read to its end; charset and case in Content-Type are fine."""
        answer = client.post(URL, input_stream=io.BytesIO(event_body(51)),
                             headers={"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
                                      "Transfer-Encoding": "chunked"})
        assert answer.status_code == 200 and answer.get_json()["status"] == "queued"

    def test_bug_is_a_logged_json_500(self, app: Flask) -> None:
        """A bug inside intake answers a plain JSON 500, logs the traceback, and leaves the next event unharmed."""
        class BrokenRules:
            @property
            def subscribed_events(self) -> frozenset[str]:
                raise ZeroDivisionError("a bug")

        rt = app.extensions["taskwarden"]
        rules, rt.rules = rt.rules, BrokenRules()
        with capture_output() as logs:
            answer = app.test_client().post(URL, data=event_body(52), content_type=FORM)
        rt.rules = rules
        assert answer.status_code == 500 and answer.get_json() == {"status": "error", "error": "internal_error"}
        assert b"Traceback" not in answer.data
        [line] = [json.loads(line) for line in logs.getvalue().splitlines() if "http.unexpected_error" in line]
        assert "ZeroDivisionError" in line["exception"] and line["task_id"] == 52
        assert app.test_client().post(URL, data=event_body(52), content_type=FORM).get_json()["status"] == "queued"

    def test_health_and_readiness(self, client: Any, make_app: Callable[..., Flask]) -> None:
        """healthz is always 200; readyz is 200 with Redis and 503 without."""
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").get_json()["status"] == "ready"
        down = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
        assert down.get("/healthz").status_code == 200
        assert down.get("/readyz").status_code == 503


class TestCoalescing:
    def test_burst_for_one_task(self, client: Any, app: Flask) -> None:
        """Twenty events for one task while its evaluation waits: one queued, nineteen duplicates."""
        statuses = [client.post(URL, data=event_body(9, ts=1000 + i), content_type=FORM).get_json()["status"]
                    for i in range(20)]
        assert statuses == ["queued"] + ["duplicate"] * 19
        assert queue_length(app) == 1

    def test_other_tasks_are_independent(self, client: Any, app: Flask) -> None:
        """Events for different tasks each queue their own evaluation."""
        for task_id in (1, 2, 3):
            assert client.post(URL, data=event_body(task_id), content_type=FORM).get_json()["status"] == "queued"
        assert queue_length(app) == 3

    def test_event_during_running_evaluation(self, app: Flask, client: Any, sandbox: Any, redis: Redis) -> None:
        """An event while the task's evaluation runs queues one more run; a further one coalesces onto it."""
        task_id = sandbox.add_task(TITLE="slow task")
        sandbox.fault("batch", status=200, delay=1.5, times=1)  # the evaluation's read takes a while
        assert client.post(URL, data=event_body(task_id), content_type=FORM).get_json()["status"] == "queued"
        portal_id = app.extensions["taskwarden"].portal.id
        during: list[str] = []

        def post_while_running() -> None:  # RQ needs the main thread (its job timeout uses SIGALRM)
            poll(lambda: not redis.exists(keys.pending(portal_id, task_id)), "the evaluation to start")
            during.extend(client.post(URL, data=event_body(task_id, ts=2000 + i), content_type=FORM)
                          .get_json()["status"] for i in range(3))

        poster = threading.Thread(target=post_while_running)
        poster.start()
        run_worker(app, max_jobs=1)
        poster.join(timeout=30)
        assert during == ["queued", "duplicate", "duplicate"]
        assert queue_length(app) == 1  # exactly one more run, after the first finished
        run_worker(app)
        assert queue_length(app) == 0


class TestNoServerErrors:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=st.binary(max_size=512) | st.text(max_size=300).map(str.encode),
           content_type=st.sampled_from([FORM, "application/json", "text/plain", "multipart/form-data"]))
    def test_generated_bodies(self, client: Any, body: bytes, content_type: str) -> None:
        """No generated body makes intake answer 5xx."""
        answer = client.post(URL, data=body, headers={"Content-Type": content_type})
        assert answer.status_code < 500
