"""Nobody let in, nothing leaked: foreign events refused, event URLs never called, secrets never written."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from redis import Redis
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bitrix import tasks
from bitrix.client import Client
from bitrix.errors import TransportError
from config.portal import Portal
from logging_setup import capture_output

from .helpers import FORM, TEST_ADMIN_TOKEN, TEST_APP_TOKEN, TEST_SECRET, event_body, run_worker, work_requests

ACCESS_TOKEN = "076a0769007d83b20058f18a00000001000006-access"


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A server on another local port that records every request it receives (it must receive none)."""
    received: list[str] = []

    @Request.application
    def record(request: Request) -> Response:
        received.append(f"{request.method} {request.full_path}")
        return Response("{}", content_type="application/json")

    server = make_server("127.0.0.1", 0, record, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


class TestNobodyLetIn:
    def test_urls_in_events_never_called(self, app: Flask, sandbox: Any, listener: tuple[str, list[str]]) -> None:
        """client_endpoint, server_endpoint and any URL in an event are ignored; only the portal is called."""
        url, received = listener
        task_id = sandbox.add_task(TITLE="t")
        body = urlencode([("event", "ONTASKUPDATE"), ("data[FIELDS_AFTER][ID]", task_id),
                          ("data[FIELDS_AFTER][URL]", f"{url}/steal"), ("auth[domain]", url.removeprefix("http://")),
                          ("auth[client_endpoint]", f"{url}/rest/"), ("auth[server_endpoint]", f"{url}/oauth/"),
                          ("auth[access_token]", ACCESS_TOKEN), ("auth[application_token]", TEST_APP_TOKEN)]).encode()
        assert app.test_client().post("/bitrix24/events", data=body, content_type=FORM).status_code == 200
        run_worker(app)
        assert [r["method"] for r in work_requests(sandbox)] == ["batch"]  # the real portal was read
        assert received == []

    @pytest.mark.parametrize(("body", "status"), [
        (b"event=X&a" + b"[b]" * 10_000 + b"=1", 400),            # 10,000 levels deep
        (b"&".join([b"a=1"] * 16_000), 400),                     # tens of thousands of keys, under 64 KiB
        (b"&".join(b"k%d=1" % i for i in range(100_000)), 413),  # 100,000 keys: over 64 KiB, refused unread
    ])
    def test_hostile_bodies_refused(self, client: Any, body: bytes, status: int) -> None:
        """Deep or huge nested keys are refused with a 4xx, never parsed into a huge structure."""
        assert client.post("/bitrix24/events", data=body, content_type=FORM).status_code == status

    def test_no_stack_traces_in_answers(self, app: Flask) -> None:
        """A bug answers a plain JSON 500 with no traceback, and debug mode is off."""
        def boom() -> str:
            raise ZeroDivisionError("a bug")

        app.add_url_rule("/boom", "boom", boom)
        answer = app.test_client().get("/boom")
        assert answer.status_code == 500 and answer.get_json() == {"status": "error", "error": "internal_error"}
        assert b"Traceback" not in answer.data and b"ZeroDivisionError" not in answer.data
        assert app.debug is False


class TestAdminToken:
    @pytest.mark.parametrize("path", ["/audit", "/report", "/rq/"])
    def test_empty_token_means_off(self, make_app: Callable[..., Flask], path: str) -> None:
        """An empty TASKWARDEN_ADMIN_TOKEN is no token: the admin endpoints do not exist (404), with or without
        a header, instead of opening to a request that sends none."""
        client = make_app(taskwarden_admin_token="").test_client()
        assert client.get(path).status_code == 404
        assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 404

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    def test_bearer_scheme_is_case_insensitive(self, client: Any, scheme: str) -> None:
        assert client.get("/audit", headers={"Authorization": f"{scheme} {TEST_ADMIN_TOKEN}"}).status_code == 200
        assert client.get("/audit", headers={"Authorization": f"{scheme} wrong-token"}).status_code == 401
        assert client.get("/audit", headers={"Authorization": TEST_ADMIN_TOKEN}).status_code == 401


class TestNothingLeaks:
    def test_secrets_absent_everywhere_after_errors(self, make_app: Callable[..., Flask], sandbox: Any,
                                                    redis: Redis) -> None:
        """After forced errors, no log line, answer, audit record, report or metric holds a secret."""
        app = make_app()
        client = app.test_client()
        answers: list[bytes] = []
        with capture_output() as rendered:
            task_id = sandbox.add_task(TITLE="t")
            sandbox.add_entry(task_id, 40000, "x")
            answers.append(client.post("/bitrix24/events", data=event_body(task_id, token="wrong"),
                                       content_type=FORM).data)
            body = event_body(task_id) + b"&" + urlencode({"auth[access_token]": ACCESS_TOKEN}).encode()
            answers.append(client.post("/bitrix24/events", data=body, content_type=FORM).data)
            sandbox.fault("task.elapseditem.update", status=401, error="INVALID_CREDENTIALS",
                          description=f"Invalid request credentials for /rest/1/{TEST_SECRET}/", in_batch=True)
            run_worker(app)
            portal = Portal(id="p", rest_base="http://127.0.0.1:9/rest/", user_id=1, secret=TEST_SECRET,
                            application_token=TEST_APP_TOKEN)
            with pytest.raises(TransportError):
                Client(portal, redis, sleep=lambda _s: None).run(tasks.get(1))
            auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
            for path in ("/audit", "/report", "/metrics", "/readyz", "/healthz"):
                answers.append(client.get(path, headers=auth).data)
        audit_text = json.dumps(client.get("/audit", headers=auth).get_json())
        assert "not_allowed" in audit_text  # the forced error was recorded ...
        everything = rendered.getvalue() + audit_text + b"".join(answers).decode()
        for secret in (TEST_SECRET, TEST_APP_TOKEN, ACCESS_TOKEN):
            assert secret not in everything  # ... and no secret anywhere
