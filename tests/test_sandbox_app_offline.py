"""Application mode over real HTTP: the offline event queue (`event.offline.*`, `feature.get`)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox
from tests.test_sandbox_app_support import TIMEOUT, call, result

ROW_KEYS = {"ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID"}


@pytest.fixture
def alpha(sandbox: SandboxControl) -> dict:
    """Portal `alpha` with the application installed and ONTASKUPDATE bound offline."""
    sandbox.add_portal("alpha")
    tokens = sandbox.issue_tokens("alpha")
    assert result(tokens["client_endpoint"], "event.bind", tokens["access_token"], event="ONTASKUPDATE",
                  event_type="offline") is True
    return tokens


def run(alpha: dict, method: str, **params: object) -> Any:
    return result(alpha["client_endpoint"], method, alpha["access_token"], **params)


def changed(sandbox: SandboxControl, *, times: int = 1, portal: str = "alpha") -> int:
    """A task of `portal` updated `times` times."""
    task_id = sandbox.add_task(portal=portal, TITLE="queued")
    for index in range(times):
        sandbox.update_task(task_id, portal=portal, TITLE=f"edit {index}")
    return task_id


class TestQueue:
    def test_each_changed_task_keeps_one_row(self, sandbox: SandboxControl, alpha: dict) -> None:
        """Thirty edits of one task and one edit of another: two rows, then nothing (clear=1)."""
        busy, quiet = changed(sandbox, times=30), changed(sandbox)
        answer = run(alpha, "event.offline.get")
        assert answer["process_id"] is None
        events = answer["events"]
        assert [event["EVENT_DATA"]["FIELDS_AFTER"]["ID"] for event in events] == [str(busy), str(quiet)]
        assert set(events[0]) == ROW_KEYS
        assert events[0]["EVENT_NAME"] == "ONTASKUPDATE"
        assert events[0]["EVENT_DATA"]["FIELDS_BEFORE"] == {"ID": str(busy)}
        assert events[0]["EVENT_ADDITIONAL"] == {"user_id": "1"}
        assert len(events[0]["MESSAGE_ID"]) == 32
        assert run(alpha, "event.offline.get") == {"process_id": None, "events": []}

    def test_reserve_reread_and_clear(self, sandbox: SandboxControl, alpha: dict) -> None:
        first, second = changed(sandbox), changed(sandbox)
        batch = run(alpha, "event.offline.get", clear=0, limit=1)
        process_id = batch["process_id"]
        assert isinstance(process_id, str) and len(process_id) == 32
        assert [e["EVENT_DATA"]["FIELDS_AFTER"]["ID"] for e in batch["events"]] == [str(first)]
        again = run(alpha, "event.offline.get", clear=0, process_id=process_id)
        assert again == {"process_id": process_id, "events": batch["events"]}
        parallel = run(alpha, "event.offline.get", clear=0)
        assert [e["EVENT_DATA"]["FIELDS_AFTER"]["ID"] for e in parallel["events"]] == [str(second)]
        assert parallel["process_id"] != process_id

        sandbox.update_task(first, portal="alpha", TITLE="changed while reserved")
        rows = {(row["data"]["FIELDS_AFTER"]["ID"], row["process_id"]) for row in sandbox.offline_rows("alpha")}
        assert rows == {(str(first), process_id), (str(second), parallel["process_id"]), (str(first), "")}

        assert run(alpha, "event.offline.clear", process_id=process_id) is True
        assert run(alpha, "event.offline.get", clear=0, process_id=process_id)["events"] == []
        listed = run(alpha, "event.offline.list")
        assert [(row["EVENT_DATA"]["FIELDS_AFTER"]["ID"], row["PROCESS_ID"], row["ERROR"]) for row in listed] == [
            (str(second), parallel["process_id"], "0"), (str(first), "", "0")]

    def test_clear_by_message_id(self, sandbox: SandboxControl, alpha: dict) -> None:
        changed(sandbox)
        changed(sandbox)
        batch = run(alpha, "event.offline.get", clear=0)
        keep, drop = batch["events"]
        run(alpha, "event.offline.clear", process_id=batch["process_id"], message_id=[drop["MESSAGE_ID"]])
        assert run(alpha, "event.offline.get", clear=0, process_id=batch["process_id"])["events"] == [keep]

    def test_error_rows_come_back_only_with_error_1(self, sandbox: SandboxControl, alpha: dict) -> None:
        bad, good = changed(sandbox), changed(sandbox)
        batch = run(alpha, "event.offline.get", clear=0)
        bad_row = next(e for e in batch["events"] if e["EVENT_DATA"]["FIELDS_AFTER"]["ID"] == str(bad))
        assert run(alpha, "event.offline.error", process_id=batch["process_id"],
                   message_id=[bad_row["MESSAGE_ID"]]) is True
        remaining = run(alpha, "event.offline.get", clear=0, process_id=batch["process_id"])["events"]
        assert [e["EVENT_DATA"]["FIELDS_AFTER"]["ID"] for e in remaining] == [str(good)]
        assert run(alpha, "event.offline.get", clear=0)["events"] == []
        errors = run(alpha, "event.offline.get", clear=0, error=1)["events"]
        assert [e["MESSAGE_ID"] for e in errors] == [bad_row["MESSAGE_ID"]]

    def test_filter_order_and_bad_arguments(self, sandbox: SandboxControl, alpha: dict) -> None:
        changed(sandbox)
        last = changed(sandbox)
        newest = run(alpha, "event.offline.get", clear=0, order={"ID": "DESC"}, limit=1)["events"]
        assert newest[0]["EVENT_DATA"]["FIELDS_AFTER"]["ID"] == str(last)
        endpoint, token = alpha["client_endpoint"], alpha["access_token"]
        cases: list[tuple[dict[str, Any], str]] = [
            ({"limit": 0}, "Value must be positive integer"),
            ({"filter": {"PROCESS_ID": "x"}}, "Filter field not allowed: PROCESS_ID"),
            ({"filter": {"!ID": 1}}, "Filter operation not allowed: !"),
            ({"order": {"ID": "UP"}}, "Order direction should be one of {ASC|DESC}"),
        ]
        for params, text in cases:
            answer = call(endpoint, "event.offline.get", token, **params)
            assert (answer.status_code, answer.json()) == (400, {"error": "ERROR_ARGUMENT",
                                                                 "error_description": text})
        missing = call(endpoint, "event.offline.clear", token)
        assert missing.json()["error_description"] == "Argument 'PROCESS_ID' is null or empty"

    def test_nothing_is_queued_without_an_offline_binding(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("bare")
        sandbox.issue_tokens("bare")
        changed(sandbox, portal="bare")
        assert sandbox.offline_rows("bare") == []


class TestAccess:
    def test_clear_0_needs_rest_offline_extended(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("basic", offline_extended=False)
        tokens = sandbox.issue_tokens("basic")
        endpoint, token = tokens["client_endpoint"], tokens["access_token"]
        assert result(endpoint, "feature.get", token, CODE="rest_offline_extended") == {"value": "N"}
        refused = call(endpoint, "event.offline.get", token, clear=0)
        assert refused.status_code == 403
        assert refused.json() == {"error": "WRONG_LICENSE", "error_description":
                                  "This feature is not enabled for the current license: extended offline events "
                                  "handling"}
        assert result(endpoint, "event.offline.get", token) == {"process_id": None, "events": []}
        sandbox.configure(portal="basic", offline_extended=True)
        assert result(endpoint, "feature.get", token, CODE="rest_offline_extended") == {"value": "Y"}

    def test_administrator_and_application_only(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                                alpha: dict) -> None:
        webhook = requests.post(sandbox_server.webhook_url + "event.offline.get", json={}, timeout=TIMEOUT)
        assert (webhook.status_code, webhook.json()["error"]) == (403, "WRONG_AUTH_TYPE")
        sandbox.configure(portal="alpha", is_admin=False)
        denied = call(alpha["client_endpoint"], "event.offline.get", alpha["access_token"])
        assert (denied.status_code, denied.json()) == (403, {"error": "ACCESS_DENIED",
                                                              "error_description": "Access denied!"})

    def test_feature_get_needs_a_code(self, alpha: dict) -> None:
        answer = call(alpha["client_endpoint"], "feature.get", alpha["access_token"])
        assert (answer.status_code, answer.json()["error"]) == (400, "CODE_EMPTY")

    def test_offline_calls_count_against_the_request_budget(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("small", burst=3, rate=0.01)
        tokens = sandbox.issue_tokens("small")
        answers = [call(tokens["client_endpoint"], "event.offline.get", tokens["access_token"]).status_code
                   for _ in range(4)]
        assert answers == [200, 200, 200, 503]
