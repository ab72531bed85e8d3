"""A thin HTTP client of the sandbox control API, for tests and the demo script."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import requests

from sandbox.apps_control import AppsControl

DATE_FIELDS = frozenset({"CREATED_DATE", "CHANGED_DATE", "DEADLINE", "CLOSED_DATE", "DATE_START", "DATE_STOP"})
POLL_INTERVAL_SECONDS = 0.02


def _native(record: dict[str, Any]) -> dict[str, Any]:
    """Date fields as aware datetimes (the API sends UTC ISO text)."""
    return {key: datetime.fromisoformat(value) if key in DATE_FIELDS and isinstance(value, str) else value
            for key, value in record.items()}


def _json_safe(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in fields.items()}


class SandboxControl(AppsControl):
    """Drive a running sandbox: reset it, add data, inject faults, read its logs.

    Methods taking `portal` act on that application-mode portal instead of the webhook portal.
    """

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, verb: str, path: str, portal: str | None = None, **kwargs: Any) -> Any:
        if portal is not None:
            kwargs["params"] = {**kwargs.get("params", {}), "portal": portal}
        response = self.session.request(verb, f"{self.base_url}/_sandbox{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox {verb} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self, seed: str | int | None = None, **config_overrides: Any) -> dict[str, Any]:
        """Empty the portal, restore startup settings with overrides, load `seed`."""
        return self._call("POST", "/reset", json={"seed": seed, **config_overrides})

    def configure(self, portal: str | None = None, **settings: Any) -> dict[str, Any]:
        """Change settings without touching data."""
        return self._call("POST", "/config", portal, json=settings)

    def config(self, portal: str | None = None) -> dict[str, Any]:
        """The current settings."""
        return self._call("GET", "/config", portal)

    def add_task(self, portal: str | None = None, **fields: Any) -> int:
        """Create a task from UPPER_CASE Bitrix fields; emits ONTASKADD."""
        return int(self._call("POST", "/tasks", portal, json=_json_safe(fields))["id"])

    def update_task(self, task_id: int, portal: str | None = None, **fields: Any) -> dict[str, Any]:
        """Change a task as a user would: CHANGED_DATE moves, ONTASKUPDATE is sent."""
        return _native(self._call("PATCH", f"/tasks/{task_id}", portal, json=_json_safe(fields)))

    def task_ids(self, portal: str | None = None) -> list[int]:
        """Every stored task's ID, ascending."""
        return [int(task_id) for task_id in self._call("GET", "/tasks", portal)["ids"]]

    def task(self, task_id: int, portal: str | None = None) -> dict[str, Any]:
        """The stored task: UPPER_CASE keys, ints as ints, dates as aware datetimes."""
        return _native(self._call("GET", f"/tasks/{task_id}", portal))

    def add_entry(self, task_id: int, seconds: int, comment: str = "", user_id: int = 1,
                  created_date: datetime | str | None = None, portal: str | None = None) -> int:
        """Create a time entry (no event, as on a real portal)."""
        created = created_date.isoformat() if isinstance(created_date, datetime) else created_date
        body = {"task_id": task_id, "seconds": seconds, "comment": comment, "user_id": user_id,
                "created_date": created}
        return int(self._call("POST", "/entries", portal, json=body)["id"])

    def entry(self, entry_id: int, portal: str | None = None) -> dict[str, Any] | None:
        """The stored entry, or None when it does not exist (e.g. deleted)."""
        response = self.session.get(f"{self.base_url}/_sandbox/entries/{entry_id}", timeout=self.timeout,
                                    params={} if portal is None else {"portal": portal})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return _native(response.json())

    def entries(self, task_id: int | None = None, portal: str | None = None) -> list[dict[str, Any]]:
        """Stored entries, all or of one task, by id."""
        params = {} if task_id is None else {"task_id": task_id}
        return [_native(item) for item in self._call("GET", "/entries", portal, params=params)]

    def add_userfield(self, portal: str | None = None, **definition: Any) -> int:
        """Create a task userfield definition (FIELD_NAME, USER_TYPE_ID, ...)."""
        return int(self._call("POST", "/userfields", portal, json=definition)["id"])

    def userfield(self, field_id: int, portal: str | None = None) -> dict[str, Any]:
        """The stored definition."""
        return self._call("GET", f"/userfields/{field_id}", portal)

    def requests(self, since: int = 0, portal: str | None = None) -> list[dict[str, Any]]:
        """REST requests the portal served after sequence number `since`."""
        return self._call("GET", "/requests", portal, params={"since": since})

    def clear_requests(self, portal: str | None = None) -> None:
        """Forget the request log."""
        self._call("DELETE", "/requests", portal)

    def events(self, portal: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """Outbound event records: payload, outcome, handler status or error (``outcome="pending"``: those
        still to be delivered)."""
        filters: dict[str, Any] = {"params": {"outcome": outcome}} if outcome else {}
        return self._call("GET", "/events", portal, **filters)

    def fault(self, method: str, status: int = 500, error: str = "INTERNAL_SERVER_ERROR",
              description: str = "Internal server error", times: int = 1, envelope: str = "classic",
              in_batch: bool = False, delay: float = 0.0, portal: str | None = None, skip: int = 0,
              after: bool = False) -> None:
        """Make the next `times` calls of `method` ("*" = any) fail; status 0 drops the connection. `skip` lets
        that many matching calls through first; `after` runs the call and then loses its answer."""
        self._call("POST", "/faults", portal, json={"method": method, "status": status, "error": error,
                                                    "description": description, "times": times,
                                                    "envelope": envelope, "in_batch": in_batch, "delay": delay,
                                                    "skip": skip, "after": after})

    def clear_faults(self, portal: str | None = None) -> None:
        """Remove every injected fault."""
        self._call("DELETE", "/faults", portal)

    def wait_for_events(self, n: int, timeout: float = 5.0, portal: str | None = None) -> list[dict[str, Any]]:
        """Poll until at least `n` events exist and none of the first `n` is still pending.

        Raises:
            TimeoutError: the deadline passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            records = self.events(portal)
            if len(records) >= n and all(record["outcome"] != "pending" for record in records[:n]):
                return records
            if time.monotonic() >= deadline:
                raise TimeoutError(f"expected {n} settled events within {timeout}s, have {records}")
            time.sleep(POLL_INTERVAL_SECONDS)
