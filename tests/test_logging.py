"""Logging: one JSON line per record, context bound, and secrets redacted after tracebacks are rendered."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import requests
import structlog

from logging_setup import MASK, capture_output, configure_logging, redact

SECRET = "zz-webhook-secret-42"
TOKEN = "tok-application-0987"


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """Logging configured as in production (JSON), rendered into a buffer."""
    configure_logging("json", "INFO", secrets=[SECRET, TOKEN])
    with capture_output() as buffer:
        yield buffer


class TestRedact:
    def test_processor(self) -> None:
        """Secret-named keys, nested auth blocks, webhook paths and registered values are masked."""
        configure_logging("json", "INFO", secrets=[SECRET, TOKEN])
        out = redact(None, "info", {"event": "x", "application_token": TOKEN, "auth": {"member_id": "m"},
                                    "url": f"https://p.bitrix24.com/rest/1/{SECRET}/tasks.task.get",
                                    "v3": f"/rest/api/7/{SECRET}/x", "note": f"said {TOKEN}!",
                                    "nested": {"list": [f"{SECRET}"]}})
        assert out["application_token"] == MASK and out["auth"] == MASK
        assert out["url"] == f"https://p.bitrix24.com/rest/1/{MASK}/tasks.task.get"
        assert out["v3"] == f"/rest/api/7/{MASK}/x"
        assert out["note"] == f"said {MASK}!" and out["nested"] == {"list": [MASK]}

    def test_traceback_of_a_requests_error(self, rendered: io.StringIO) -> None:
        """A requests error's traceback, full of the URL, is rendered and then scrubbed."""
        url = f"http://127.0.0.1:9/rest/1/{SECRET}/tasks.task.get.json"
        try:
            requests.post(url, timeout=1)
        except requests.RequestException:
            structlog.get_logger("t").exception("bitrix.failed", url=url)
        [line] = [json.loads(line) for line in rendered.getvalue().splitlines() if "bitrix.failed" in line]
        assert "Traceback" in line["exception"] and "/rest/1/***/" in line["exception"]
        assert SECRET not in rendered.getvalue()

    def test_context_bound_per_unit_of_work(self, rendered: io.StringIO) -> None:
        """Context bound with contextvars appears on every line until cleared."""
        structlog.contextvars.bind_contextvars(job_id="j-1", task_id=42)
        structlog.get_logger("t").info("policy.elapsed_cap.changed", rule="cap")
        structlog.contextvars.clear_contextvars()
        structlog.get_logger("t").info("after")
        first, second = (json.loads(line) for line in rendered.getvalue().splitlines()[-2:])
        assert (first["job_id"], first["task_id"], first["rule"]) == ("j-1", 42, "cap")
        assert "job_id" not in second


class TestBrokenOutput:
    def test_logging_never_raises(self, rendered: io.StringIO) -> None:
        """A broken stdout (a closed pipe) loses the line; the code that logged goes on."""
        class BrokenPipe(io.StringIO):
            def write(self, _text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

        handler = logging.getLogger().handlers[0]
        previous = handler.setStream(BrokenPipe())  # type: ignore[attr-defined]
        try:
            structlog.get_logger("t").info("lost", task_id=1)
            structlog.get_logger("t").error("lost too")
        finally:
            handler.setStream(previous)  # type: ignore[attr-defined]
        structlog.get_logger("t").info("kept")
        assert [json.loads(line)["event"] for line in rendered.getvalue().splitlines()] == ["kept"]
