"""The Bitrix24 client against the sandbox portal over real HTTP: wire shape, errors, retries, secrecy."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import requests
from flask import Flask
from redis import Redis

from bitrix import elapsed, tasks
from bitrix.batch import Command
from bitrix.client import Client
from bitrix.errors import AuthError, MethodError, NotFound, TransportError
from config.portal import Portal
from logging_setup import capture_output

from .helpers import TEST_SECRET


@pytest.fixture
def bx(app: Flask) -> Client:
    return app.extensions["taskwarden"].client


def rest_requests(sandbox: Any) -> list[dict[str, Any]]:
    return sandbox.requests()


class TestWire:
    def test_positional_order(self, bx: Client, sandbox: Any) -> None:
        """task.elapseditem.update goes out as a list in the manifest's order and updates the entry."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 5000, "call")
        bx.run(elapsed.update(task_id, entry_id, 3000, "call (capped)"))
        [logged] = rest_requests(sandbox)
        assert logged["method"] == "task.elapseditem.update"
        assert logged["params"] == [task_id, entry_id, {"SECONDS": 3000, "COMMENT_TEXT": "call (capped)"}]
        assert (sandbox.entry(entry_id)["SECONDS"], sandbox.entry(entry_id)["COMMENT_TEXT"]) == (3000, "call (capped)")

    def test_named_keys_in_wrong_order_misbehave(self, bx: Client, sandbox: Any) -> None:
        """Why we send lists: the portal ignores names, so fields-before-id is a type error."""
        task_id = sandbox.add_task(TITLE="t")
        with pytest.raises(MethodError, match="expected to be of type"):
            bx.call("task.elapseditem.add", {"ARFIELDS": {"SECONDS": 60, "COMMENT_TEXT": ""}, "TASKID": task_id})

    def test_strings_normalised(self, bx: Client, sandbox: Any) -> None:
        """Numbers the portal sends as strings arrive as ints in our entries and tasks."""
        task_id = sandbox.add_task(TITLE="t", GROUP_ID=12, RESPONSIBLE_ID=7)
        sandbox.add_entry(task_id, 3600, "standup")
        [entry] = elapsed.entries_from_wire(bx.run(elapsed.list_for_task(task_id)))
        task = tasks.task_from_wire(bx.run(tasks.get(task_id)))
        assert entry.seconds == 3600 and entry.task_id == task_id
        assert task is not None and (task.id, task.group_id, task.responsible_id) == (task_id, 12, 7)

    def test_invisible_task_is_none(self, bx: Client, sandbox: Any) -> None:
        """tasks.task.get on a missing task answers 200 with ``[]``: read as 'not visible'."""
        assert tasks.task_from_wire(bx.run(tasks.get(999_999))) is None


class TestErrors:
    def test_classic_envelope(self, bx: Client, sandbox: Any) -> None:
        """A classic error keeps its code and description."""
        task_id = sandbox.add_task(TITLE="t")
        with pytest.raises(MethodError) as caught:
            bx.call("tasks.task.update", {"taskId": task_id, "fields": {}})
        assert caught.value.code == "100" and "fields" in caught.value.description

    def test_v3_envelope(self, bx: Client, sandbox: Any) -> None:
        """A v3 error object is decoded into the same hierarchy."""
        with pytest.raises(NotFound) as caught:
            bx.call("tasks.task.get", {"id": 999_999}, v3=True)
        assert caught.value.code.endswith("ENTITYNOTFOUNDEXCEPTION")

    def test_batch_with_a_failing_command(self, bx: Client, sandbox: Any) -> None:
        """One batch request; the good command's result and the bad command's typed error both come back."""
        task_id = sandbox.add_task(TITLE="t")
        result = bx.batch({"ok": tasks.get(task_id), "bad": Command("task.elapseditem.get", [task_id, 987654])})
        assert tasks.task_from_wire(result.results["ok"]).id == task_id  # type: ignore[union-attr]
        assert isinstance(result.errors["bad"], NotFound)
        assert [r["method"] for r in rest_requests(sandbox)] == ["batch"]

    def test_query_limit_waited_out(self, bx: Client, sandbox: Any) -> None:
        """Two 503 QUERY_LIMIT_EXCEEDED answers are waited out and the third attempt succeeds."""
        task_id = sandbox.add_task(TITLE="t")
        sandbox.fault("tasks.task.get", status=503, error="QUERY_LIMIT_EXCEEDED", description="Too many requests",
                      times=2)
        assert tasks.task_from_wire(bx.run(tasks.get(task_id))) is not None
        assert [r["status"] for r in rest_requests(sandbox)] == [503, 503, 200]
        assert bx.stats.budget_wait_seconds > 0  # the client waited for the drain, it did not hammer

    def test_server_error_retried(self, bx: Client, sandbox: Any) -> None:
        """Two 500s are retried with backoff; the call then succeeds."""
        task_id = sandbox.add_task(TITLE="t")
        sandbox.fault("tasks.task.get", status=500, error="INTERNAL_SERVER_ERROR", times=2)
        assert tasks.task_from_wire(bx.run(tasks.get(task_id))) is not None
        assert [r["status"] for r in rest_requests(sandbox)] == [500, 500, 200]

    def test_access_denied_not_retried(self, bx: Client, sandbox: Any) -> None:
        """A refusal is raised at once: one request."""
        sandbox.fault("tasks.task.get", status=403, error="ACCESS_DENIED", times=5)
        with pytest.raises(Exception, match="ACCESS_DENIED"):
            bx.run(tasks.get(1))
        assert len(rest_requests(sandbox)) == 1


class TestSecrecy:
    def test_wrong_secret_refused_without_echo(self, redis: Redis, sandbox_server: Any) -> None:
        """The sandbox refuses a wrong webhook code; our error does not contain the code we sent."""
        portal = Portal(id="p", rest_base=f"{sandbox_server.url}/rest/", user_id=1, secret="not-the-secret-zz",
                        application_token="t")
        with pytest.raises(AuthError) as caught:
            Client(portal, redis).run(tasks.get(1))
        assert "not-the-secret-zz" not in str(caught.value) + repr(caught.value)

    def test_network_error_hides_the_url(self, redis: Redis, app: Flask) -> None:
        """A refused connection becomes a TransportError whose text, cause and rendered logs omit the secret.

        urllib3 itself logs the request path (with the secret) when it retries a connection; our
        formatter's redaction step is what keeps it out of the output, so the test renders through it.
        """
        handler = logging.StreamHandler(io.StringIO())  # sees urllib3's records before any formatting
        raw: list[str] = []

        def keep_raw(record: logging.LogRecord) -> bool:
            raw.append(record.getMessage())
            return True

        handler.addFilter(keep_raw)
        logging.getLogger().addHandler(handler)
        portal = Portal(id="p", rest_base="http://127.0.0.1:9/rest/", user_id=1, secret=TEST_SECRET,
                        application_token="t")
        try:
            with capture_output() as rendered, pytest.raises(TransportError) as caught:
                Client(portal, redis, sleep=lambda _s: None).run(tasks.get(1))
        finally:
            logging.getLogger().removeHandler(handler)
        error = caught.value
        assert TEST_SECRET not in str(error) + repr(error)
        assert error.__cause__ is None and error.__suppress_context__
        assert any(TEST_SECRET in line for line in raw)  # the leak we guard against is real ...
        assert "bitrix.retry" in rendered.getvalue()
        assert TEST_SECRET not in rendered.getvalue()  # ... and the rendered output has none of it

    def test_transport_really_sends_the_secret_in_the_path(self, sandbox: Any, sandbox_server: Any) -> None:
        """Sanity check for the test above: the secret is in every request URL, so hiding it matters."""
        answer = requests.post(f"{sandbox_server.url}/rest/1/{TEST_SECRET}/tasks.task.get.json", json={"taskId": 1},
                               timeout=5)
        assert answer.status_code == 200
