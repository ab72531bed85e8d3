"""Application mode over real HTTP: event.bind / unbind / get, and events delivered to bound handlers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox
from tests.test_sandbox_app_support import TIMEOUT, Listener, call, result

TOKEN_AUTH = {"access_token", "expires", "expires_in", "scope", "domain", "server_endpoint", "status",
              "client_endpoint", "member_id", "user_id", "application_token"}


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.stop()


@pytest.fixture
def alpha(sandbox: SandboxControl) -> dict:
    """An installed application on portal `alpha`: the tokens' `auth` block."""
    sandbox.add_portal("alpha")
    return sandbox.issue_tokens("alpha")


def bind(alpha: dict, **params: object) -> dict:
    """event.bind's whole answer."""
    return call(alpha["client_endpoint"], "event.bind", alpha["access_token"], **params).json()


class TestBinding:
    def test_a_webhook_cannot_bind(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        response = requests.post(sandbox_server.webhook_url + "event.bind",
                                 json={"event": "ONTASKADD", "handler": "https://example.com/h"}, timeout=TIMEOUT)
        assert response.status_code == 403
        assert response.json() == {"error": "WRONG_AUTH_TYPE",
                                   "error_description": "Current authorization type is denied for this method"}

    def test_duplicate_is_refused_and_event_get_lists(self, alpha: dict, listener: Listener) -> None:
        handler = listener.url()
        assert bind(alpha, event="onTaskAdd", handler=handler)["result"] is True
        duplicate = call(alpha["client_endpoint"], "event.bind", alpha["access_token"], EVENT="ONTASKADD",
                         HANDLER=handler)
        assert duplicate.status_code == 400
        assert duplicate.json() == {"error": "ERROR_CORE",
                                    "error_description": "Unable to set event handler: Handler already binded"}
        assert bind(alpha, event="ONTASKUPDATE", event_type="offline")["result"] is True
        assert result(alpha["client_endpoint"], "event.get", alpha["access_token"]) == [
            {"event": "ONTASKADD", "handler": handler, "auth_type": "0", "offline": 0},
            {"event": "ONTASKUPDATE", "connector_id": "", "offline": 1},
        ]

    def test_unbind_counts_what_it_removed(self, alpha: dict, listener: Listener) -> None:
        bind(alpha, event="ONTASKADD", handler=listener.url())
        endpoint, token = alpha["client_endpoint"], alpha["access_token"]
        assert result(endpoint, "event.unbind", token, event="ONTASKADD", handler=listener.url()) == {"count": 1}
        assert result(endpoint, "event.unbind", token, event="ONTASKADD", handler=listener.url()) == {"count": 0}
        assert result(endpoint, "event.get", token) == []

    @pytest.mark.parametrize(("params", "code", "text"), [
        ({"handler": "https://example.com/h"}, "ERROR_ARGUMENT", "Argument 'EVENT' is null or empty"),
        ({"event": "ONTASKADD"}, "ERROR_ARGUMENT", "Argument 'HANDLER' is null or empty"),
        ({"event": "ONTASKADD", "handler": "https://example.com/h", "event_type": "sometimes"}, "ERROR_ARGUMENT",
         "Value must be one of {online|offline}"),
        ({"event": "ONNOSUCHTHING", "handler": "https://example.com/h"}, "ERROR_EVENT_NOT_FOUND", "Event not found"),
        ({"event": "ONOFFLINEEVENT", "event_type": "offline"}, "ERROR_ARGUMENT",
         "Offline event cannot be registered for this event."),
        ({"event": "ONTASKADD", "handler": "ftp://example.com/h"}, "ERROR_UNSUPPORTED_PROTOCOL",
         "Unsupported handler protocol"),
        ({"event": "ONTASKADD", "handler": "http://localhost/h"}, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL"),
    ])
    def test_bad_bindings(self, alpha: dict, params: dict, code: str, text: str) -> None:
        answer = bind(alpha, **params)
        assert answer == {"error": code, "error_description": text}

    def test_offline_binding_needs_an_administrator(self, sandbox: SandboxControl, alpha: dict) -> None:
        sandbox.configure(portal="alpha", is_admin=False)
        assert bind(alpha, event="ONTASKUPDATE", event_type="offline") == {
            "error": "ACCESS_DENIED",
            "error_description": "Access denied! Offline events binding requires administrator access rights"}


class TestDelivery:
    def test_online_events_reach_the_handler_with_tokens(self, sandbox: SandboxControl, alpha: dict,
                                                         listener: Listener) -> None:
        """A control change and a REST change, delivered in order, each with a working access token."""
        bind(alpha, event="ONTASKADD", handler=listener.url("/add"))
        bind(alpha, event="ONTASKUPDATE", handler=listener.url("/update"))
        task_id = sandbox.add_task(portal="alpha", TITLE="Bound")
        result(alpha["client_endpoint"], "tasks.task.update", alpha["access_token"], taskId=task_id,
               fields={"TITLE": "Changed"})
        added, updated = listener.wait(2)
        assert (added["path"], updated["path"]) == ("/add", "/update")
        assert added["content_type"] == "application/x-www-form-urlencoded"
        assert added["form"]["event"] == "ONTASKADD"
        assert added["form"]["data"]["FIELDS_AFTER"] == {"ID": str(task_id)}
        assert updated["form"]["data"]["FIELDS_BEFORE"] == {"ID": str(task_id)}
        auth = updated["form"]["auth"]
        assert set(auth) == TOKEN_AUTH
        assert (auth["domain"], auth["member_id"]) == (alpha["domain"], alpha["member_id"])
        assert auth["application_token"] == alpha["application_token"]
        assert auth["client_endpoint"] == alpha["client_endpoint"]
        assert result(auth["client_endpoint"], "tasks.task.get", auth["access_token"], taskId=task_id)["task"][
            "title"] == "Changed"
        records = sandbox.wait_for_events(2, portal="alpha")
        assert [(r["event"], r["outcome"], r["task_id"]) for r in records] == [
            ("ONTASKADD", "delivered", task_id), ("ONTASKUPDATE", "delivered", task_id)]

    def test_nothing_goes_to_the_webhook_portal_or_unbound_events(self, sandbox: SandboxControl, alpha: dict,
                                                                  listener: Listener) -> None:
        bind(alpha, event="ONTASKUPDATE", handler=listener.url())
        sandbox.add_task(portal="alpha", TITLE="No ONTASKADD binding")
        assert sandbox.events(portal="alpha") == []
        assert sandbox.events() == []

    def test_a_paused_portal_drops_its_events(self, sandbox: SandboxControl, alpha: dict, listener: Listener) -> None:
        bind(alpha, event="ONTASKADD", handler=listener.url())
        sandbox.configure(portal="alpha", events_paused=True)
        sandbox.add_task(portal="alpha", TITLE="Lost")
        assert [record["outcome"] for record in sandbox.events(portal="alpha")] == ["dropped"]

    def test_onofflineevent_is_throttled_by_min_timeout(self, sandbox: SandboxControl, alpha: dict,
                                                        listener: Listener) -> None:
        """With the default minTimeout (1 s) three quick changes notify once; the notice carries a refresh
        token and no data."""
        bind(alpha, event="ONTASKUPDATE", event_type="offline")
        bind(alpha, event="ONOFFLINEEVENT", handler=listener.url())
        task_id = sandbox.add_task(portal="alpha", TITLE="Queued")
        for title in ("one", "two", "three"):
            sandbox.update_task(task_id, portal="alpha", TITLE=title)
        [notice] = listener.wait(1)
        assert notice["form"]["event"] == "ONOFFLINEEVENT"
        assert "data" not in notice["form"]
        assert "refresh_token" in notice["form"]["auth"]
        outcomes = [record["outcome"] for record in sandbox.wait_for_events(3, portal="alpha")]
        assert outcomes == ["delivered", "throttled", "throttled"]

    def test_min_timeout_zero_notifies_once_per_hit(self, sandbox: SandboxControl, alpha: dict,
                                                    listener: Listener) -> None:
        bind(alpha, event="ONTASKUPDATE", event_type="offline")
        bind(alpha, event="ONOFFLINEEVENT", handler=listener.url(), options={"minTimeout": 0})
        first, second = sandbox.add_task(portal="alpha"), sandbox.add_task(portal="alpha")
        sandbox.update_task(first, portal="alpha", TITLE="a")
        sandbox.update_task(second, portal="alpha", TITLE="b")
        commands = {"a": f"tasks.task.update?taskId={first}&fields[TITLE]=c",
                    "b": f"tasks.task.update?taskId={second}&fields[TITLE]=d"}
        result(alpha["client_endpoint"], "batch", alpha["access_token"], cmd=commands)
        outcomes = [record["outcome"] for record in sandbox.wait_for_events(4, portal="alpha")]
        assert outcomes == ["delivered", "delivered", "delivered", "throttled"]
        assert sandbox.bindings("alpha")[1]["options"] == {"minTimeout": 0}
