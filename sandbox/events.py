"""Outbound events: ONTASKADD / ONTASKUPDATE posted form-encoded to the handler (reference §1.1-1.5), and
the application-mode bodies (`app_events`) posted the same way.

Delivery happens on a background thread, like the queue server that really sends them: the
request that changed the task answers first. No retries, no dedup (§1.1). Each delivery is
recorded so tests can see what was sent and what the handler answered.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import requests

from sandbox.config import SandboxConfig
from sandbox.phpform import build_query

SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"
EVENT_HANDLER_ID = "1"
DELIVERY_TIMEOUT_SECONDS = 10.0
HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Bitrix24 Webhook Engine"}


def event_data(event: str, task_id: int) -> dict[str, Any]:
    """The `data` block exactly as `CTaskRestService::onEventFilter` builds it (§1.3)."""
    undefined = "undefined"
    ident = {"ID": str(task_id)}
    if event == "ONTASKADD":
        return {"FIELDS_BEFORE": undefined, "FIELDS_AFTER": ident,
                "IS_ACCESSIBLE_BEFORE": "N", "IS_ACCESSIBLE_AFTER": undefined}
    if event == "ONTASKDELETE":
        return {"FIELDS_BEFORE": ident, "FIELDS_AFTER": undefined,
                "IS_ACCESSIBLE_BEFORE": undefined, "IS_ACCESSIBLE_AFTER": "N"}
    return {"FIELDS_BEFORE": ident, "FIELDS_AFTER": ident,
            "IS_ACCESSIBLE_BEFORE": undefined, "IS_ACCESSIBLE_AFTER": undefined}


def payload(event: str, task_id: int, config: SandboxConfig, client_endpoint: str) -> dict[str, Any]:
    """The outgoing-webhook variant: `auth` carries no tokens (§1.5)."""
    return {
        "event": event,
        "event_handler_id": EVENT_HANDLER_ID,
        "data": event_data(event, task_id),
        "ts": str(int(time.time())),
        "auth": {
            "domain": config.domain,
            "client_endpoint": client_endpoint,
            "server_endpoint": SERVER_ENDPOINT,
            "member_id": config.member_id,
            "application_token": config.application_token,
        },
    }


def post_form(url: str, body: str) -> dict[str, Any]:
    """POST a form body now and say how it went: `outcome`, `status`, `response` (the text) or `error`."""
    try:
        response = requests.post(url, data=body, headers=HEADERS, timeout=DELIVERY_TIMEOUT_SECONDS,
                                 allow_redirects=False)
    except requests.RequestException as exc:
        return {"outcome": "failed", "status": None, "response": None, "error": type(exc).__name__}
    ok = 200 <= response.status_code < 300
    return {"outcome": "delivered" if ok else "failed", "status": response.status_code, "response": response.text,
            "error": None}


class Outbox:
    """Records every event and delivers it from one daemon thread, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def emit(self, event: str, task_id: int, config: SandboxConfig, client_endpoint: str) -> None:
        """Queue one event; paused events and events without a handler are recorded, not sent."""
        outcome = "pending"
        if config.events_paused:
            outcome = "dropped"
        elif not config.handler_url:
            outcome = "no_handler"
        self.post(event, task_id, config.handler_url, payload(event, task_id, config, client_endpoint), outcome)

    def post(self, event: str, task_id: int | None, handler_url: str | None, data: dict[str, Any],
             outcome: str = "pending") -> None:
        """Record `data` for `handler_url` and queue it for delivery when `outcome` is `pending`; any other
        outcome (`dropped`, `no_handler`, `throttled`) is only recorded."""
        record = self._record(event, task_id, handler_url, data, outcome)
        if outcome == "pending":
            self._start()
            self._queue.put(record)

    def deliver_now(self, event: str, handler_url: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST `data` on the caller's thread and record it; the record (with the handler's answer in
        `response`) is returned. Used where the caller needs the answer: installation callbacks."""
        record = self._record(event, None, handler_url, data, "pending")
        update = post_form(handler_url, record["body"])
        with self._lock:
            record.update(update)
            return dict(record)

    def _record(self, event: str, task_id: int | None, handler_url: str | None, data: dict[str, Any],
                outcome: str) -> dict[str, Any]:
        with self._lock:
            record = {"seq": len(self._records) + 1, "at": time.time(), "event": event, "task_id": task_id,
                      "handler_url": handler_url, "payload": data, "body": build_query(data),
                      "outcome": outcome, "status": None, "error": None}
            self._records.append(record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Copies of all records, oldest first."""
        with self._lock:
            return [dict(record) for record in self._records]

    def clear(self) -> None:
        """Forget all records and undelivered events (sandbox reset)."""
        with self._lock:
            self._records = []
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop the delivery thread after what is queued."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=DELIVERY_TIMEOUT_SECONDS + 1)
            self._thread = None
        self._session.close()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-events", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (record := self._queue.get()) is not None:
            self._deliver(record)

    def _deliver(self, record: dict[str, Any]) -> None:
        try:
            response = self._session.post(record["handler_url"], data=record["body"], headers=HEADERS,
                                          timeout=DELIVERY_TIMEOUT_SECONDS, allow_redirects=False)
        except requests.RequestException as exc:
            update: dict[str, Any] = {"outcome": "failed", "error": type(exc).__name__}
        else:
            ok = 200 <= response.status_code < 300
            update = {"outcome": "delivered" if ok else "failed", "status": response.status_code}
            response.close()
        update["delivered_at"] = time.time()
        with self._lock:
            record.update(update)
