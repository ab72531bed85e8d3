"""Application mode over real HTTP: the installation callback, forged callbacks, and uninstalling."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest

from sandbox.apps import member_id_of
from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox
from tests.test_sandbox_app_support import Listener, call, refresh, result

TOKENLESS_AUTH = {"domain", "server_endpoint", "client_endpoint", "member_id", "application_token"}


@pytest.fixture
def app_listener() -> Iterator[Listener]:
    """The application: answers every POST with 200 "installed"."""
    running = Listener(reply="installed")
    yield running
    running.stop()


class TestInstall:
    def test_install_callback_body_shape(self, sandbox: SandboxControl, sandbox_server: RunningSandbox,
                                         app_listener: Listener) -> None:
        """Form-encoded with PHP bracket keys, in the documented order; fresh tokens that work."""
        info = sandbox.add_portal("alpha")
        status, body = sandbox.install("alpha", app_listener.url("/bitrix24/install"))
        assert (status, body) == (200, "installed")
        [posted] = app_listener.wait(1)
        assert posted["path"] == "/bitrix24/install"
        assert posted["content_type"] == "application/x-www-form-urlencoded"
        keys = [key for key, _ in parse_qsl(posted["body"], keep_blank_values=True)]
        assert keys == ["event", "data[VERSION]", "data[ACTIVE]", "data[INSTALLED]", "data[LANGUAGE_ID]", "ts",
                        "auth[access_token]", "auth[expires]", "auth[expires_in]", "auth[scope]", "auth[domain]",
                        "auth[server_endpoint]", "auth[status]", "auth[client_endpoint]", "auth[member_id]",
                        "auth[user_id]", "auth[refresh_token]", "auth[application_token]"]
        form = posted["form"]
        assert form["event"] == "ONAPPINSTALL"
        assert form["data"] == {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
        auth = form["auth"]
        assert auth["domain"] == "alpha.sandbox.bitrix24.test"
        assert auth["member_id"] == info["member_id"] == member_id_of("alpha")
        assert auth["client_endpoint"] == f"{sandbox_server.url}/portals/alpha/rest/"
        assert auth["server_endpoint"] == f"{sandbox_server.url}/oauth/rest/"
        assert (auth["scope"], auth["status"], auth["user_id"], auth["expires_in"]) == ("task", "L", "1", "3600")
        assert auth["application_token"] == info["application_token"]
        assert result(auth["client_endpoint"], "tasks.task.list", auth["access_token"]) == {"tasks": []}
        client_id, secret = sandbox.app_credentials()
        assert refresh(sandbox.oauth_url(), auth["refresh_token"], client_id, secret).status_code == 200
        assert sandbox.portal_info("alpha")["installed"] is True

    def test_the_receivers_answer_comes_back(self, sandbox: SandboxControl) -> None:
        refusing = Listener(status=403, reply="refused")
        try:
            sandbox.add_portal("alpha")
            assert sandbox.install("alpha", refusing.url()) == (403, "refused")
        finally:
            refusing.stop()
        assert sandbox.install("alpha", "http://127.0.0.1:9/unreachable") == (None, None)

    def test_application_token_is_stable_across_reinstalls_until_changed(
            self, sandbox: SandboxControl, app_listener: Listener) -> None:
        sandbox.add_portal("alpha")
        sandbox.install("alpha", app_listener.url())
        sandbox.uninstall("alpha")
        sandbox.install("alpha", app_listener.url())
        first, second = (item["form"]["auth"] for item in app_listener.wait(2))
        assert first["application_token"] == second["application_token"]
        assert first["refresh_token"] != second["refresh_token"]
        new = sandbox.new_application_token("alpha")
        sandbox.install("alpha", app_listener.url())
        assert app_listener.wait(3)[2]["form"]["auth"]["application_token"] == new != first["application_token"]

    def test_forged_callback_carries_tokens_the_oauth_server_refuses(
            self, sandbox: SandboxControl, app_listener: Listener) -> None:
        """A forgery on a real portal's identity, with one field chosen by the test."""
        info = sandbox.add_portal("alpha")
        status, _ = sandbox.forged_install(app_listener.url(), portal="alpha", client_endpoint="http://10.0.0.1/rest/")
        assert status == 200
        auth = app_listener.wait(1)[0]["form"]["auth"]
        assert auth["member_id"] == info["member_id"]
        assert auth["client_endpoint"] == "http://10.0.0.1/rest/"
        client_id, secret = sandbox.app_credentials()
        answer = refresh(sandbox.oauth_url(), auth["refresh_token"], client_id, secret)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
        assert call(info["client_endpoint"], "tasks.task.list", auth["access_token"]).status_code == 401

    def test_forged_callback_without_a_portal_has_a_made_up_identity(
            self, sandbox: SandboxControl, app_listener: Listener) -> None:
        sandbox.forged_install(app_listener.url(), event="ONAPPINSTALL", member_id="f" * 32)
        form = app_listener.wait(1)[0]["form"]
        assert form["event"] == "ONAPPINSTALL"
        assert form["auth"]["member_id"] == "f" * 32
        assert form["auth"]["domain"] == "forged.bitrix24.test"


class TestUninstall:
    def _installed(self, sandbox: SandboxControl, listener: Listener) -> dict:
        sandbox.add_portal("alpha")
        tokens = sandbox.issue_tokens("alpha")
        assert result(tokens["client_endpoint"], "event.bind", tokens["access_token"], event="ONAPPUNINSTALL",
                      handler=listener.url("/bitrix24/events")) is True
        return tokens

    def test_uninstall_posts_without_tokens_and_revokes(self, sandbox: SandboxControl,
                                                        app_listener: Listener) -> None:
        tokens = self._installed(sandbox, app_listener)
        [delivery] = sandbox.uninstall("alpha", clean=True)
        assert (delivery["status"], delivery["outcome"]) == (200, "delivered")
        form = app_listener.wait(1)[0]["form"]
        assert form["event"] == "ONAPPUNINSTALL"
        assert form["data"] == {"LANGUAGE_ID": "en", "CLEAN": "1"}
        assert set(form["auth"]) == TOKENLESS_AUTH
        assert form["auth"]["application_token"] == tokens["application_token"]
        assert form["event_handler_id"].isdigit()
        refused = call(tokens["client_endpoint"], "tasks.task.list", tokens["access_token"])
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_token")
        client_id, secret = sandbox.app_credentials()
        assert refresh(sandbox.oauth_url(), tokens["refresh_token"], client_id, secret).status_code == 400
        assert sandbox.bindings("alpha") == []
        assert sandbox.portal_info("alpha")["installed"] is False

    def test_the_docs_spelling_and_clean_zero(self, sandbox: SandboxControl, app_listener: Listener) -> None:
        self._installed(sandbox, app_listener)
        sandbox.uninstall("alpha", clean=False, event="ONAPPSUNINSTALL")
        form = app_listener.wait(1)[0]["form"]
        assert (form["event"], form["data"]["CLEAN"]) == ("ONAPPSUNINSTALL", "0")

    def test_without_a_bound_handler_nothing_is_posted_but_tokens_go(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("alpha")
        tokens = sandbox.issue_tokens("alpha")
        assert sandbox.uninstall("alpha") == []
        assert call(tokens["client_endpoint"], "tasks.task.list", tokens["access_token"]).status_code == 401

    def test_uninstall_events_are_recorded_with_the_portal(self, sandbox: SandboxControl,
                                                           app_listener: Listener) -> None:
        self._installed(sandbox, app_listener)
        sandbox.uninstall("alpha")
        [record] = sandbox.events(portal="alpha")
        assert (record["event"], record["outcome"]) == ("ONAPPUNINSTALL", "delivered")
