"""Small helpers shared by tests: event bodies and polling with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from .conftest import TEST_APP_TOKEN, TEST_MEMBER_ID

FORM = "application/x-www-form-urlencoded"


def event_body(task_id: int | str = 42, *, event: str = "ONTASKUPDATE", token: str | None = TEST_APP_TOKEN,
               member_id: str = TEST_MEMBER_ID, ts: int = 1766047124, before: Any = None) -> bytes:
    """A form body shaped exactly like a Bitrix24 outgoing-webhook task event."""
    pairs: list[tuple[str, Any]] = [("event", event), ("event_handler_id", "27")]
    if event == "ONTASKADD":
        pairs += [("data[FIELDS_BEFORE]", "undefined"), ("data[FIELDS_AFTER][ID]", task_id)]
    else:
        pairs += [("data[FIELDS_BEFORE][ID]", before if before is not None else task_id),
                  ("data[FIELDS_AFTER][ID]", task_id)]
    pairs += [("data[IS_ACCESSIBLE_BEFORE]", "undefined"), ("data[IS_ACCESSIBLE_AFTER]", "undefined"), ("ts", ts),
              ("auth[domain]", "example.bitrix24.com"), ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
              ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[member_id]", member_id)]
    if token is not None:
        pairs.append(("auth[application_token]", token))
    return urlencode(pairs).encode()


def poll(check: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; fail the test naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
