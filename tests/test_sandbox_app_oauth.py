"""Application mode over real HTTP: the OAuth token endpoint and REST calls authorised by access tokens."""

from __future__ import annotations

import pytest
import requests

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox
from tests.test_sandbox_app_support import TIMEOUT, call, refresh, result


@pytest.fixture
def alpha(sandbox: SandboxControl) -> dict:
    """An application-mode portal with the application installed: its summary plus a token pair."""
    info = sandbox.add_portal("alpha")
    return {**info, **sandbox.issue_tokens("alpha")}


class TestRefresh:
    def test_refresh_rotates_and_the_old_refresh_token_is_invalid_grant(
            self, sandbox: SandboxControl, sandbox_server: RunningSandbox, alpha: dict) -> None:
        """Each refresh answers a new pair; the used refresh token then gets 400 invalid_grant."""
        client_id, secret = sandbox.app_credentials()
        first = refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret)
        assert first.status_code == 200, first.text
        body = first.json()
        assert set(body) == {"access_token", "refresh_token", "expires", "expires_in", "client_endpoint",
                             "server_endpoint", "domain", "member_id", "scope", "status", "user_id"}
        assert body["refresh_token"] != alpha["refresh_token"]
        assert body["access_token"] != alpha["access_token"]
        assert body["client_endpoint"] == f"{sandbox_server.url}/portals/alpha/rest/"
        assert body["server_endpoint"] == f"{sandbox_server.url}/oauth/rest/"
        assert body["domain"] == "127.0.0.1"  # the OAuth server's host, not the portal's
        assert body["member_id"] == alpha["member_id"]
        assert (body["scope"], body["status"], body["user_id"], body["expires_in"]) == ("task", "L", 1, 3600)
        assert isinstance(body["expires"], int)

        again = refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        assert refresh(sandbox.oauth_url(), body["refresh_token"], client_id, secret).status_code == 200
        assert result(body["client_endpoint"], "tasks.task.list", body["access_token"]) == {"tasks": []}
        assert sandbox.oauth_calls("alpha") == 3

    def test_wrong_client_credentials_are_invalid_client_and_spend_nothing(
            self, sandbox: SandboxControl, alpha: dict) -> None:
        client_id, secret = sandbox.app_credentials()
        wrong = refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, "not-the-secret")
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        assert refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret).status_code == 200

    def test_post_form_is_accepted_like_get(self, sandbox: SandboxControl, alpha: dict) -> None:
        client_id, secret = sandbox.app_credentials()
        response = requests.post(sandbox.oauth_url(), data={"grant_type": "refresh_token", "client_id": client_id,
                                                            "client_secret": secret,
                                                            "refresh_token": alpha["refresh_token"]},
                                 timeout=TIMEOUT)
        assert response.status_code == 200, response.text

    def test_revoked_refresh_tokens_are_invalid_grant_while_access_tokens_still_work(
            self, sandbox: SandboxControl, alpha: dict) -> None:
        sandbox.revoke_refresh("alpha")
        client_id, secret = sandbox.app_credentials()
        answer = refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
        assert result(alpha["client_endpoint"], "tasks.task.list", alpha["access_token"]) == {"tasks": []}

    def test_injected_faults_then_recovery(self, sandbox: SandboxControl, alpha: dict) -> None:
        """A 503, then a dropped connection; the refresh token is not spent by either."""
        client_id, secret = sandbox.app_credentials()
        sandbox.oauth_fault(status=503)
        sandbox.oauth_fault(status=0)
        unavailable = refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret)
        assert unavailable.status_code == 503
        assert unavailable.json()["error"] == "temporarily_unavailable"
        with pytest.raises(requests.ConnectionError):
            refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret)
        assert refresh(sandbox.oauth_url(), alpha["refresh_token"], client_id, secret).status_code == 200
        assert [entry["status"] for entry in sandbox.oauth_log("alpha")] == [503, 0, 200]

    def test_delay_fault_slows_a_normal_answer(self, sandbox: SandboxControl, alpha: dict) -> None:
        client_id, secret = sandbox.app_credentials()
        sandbox.oauth_fault(status=200, delay=0.5)
        with pytest.raises(requests.Timeout):
            requests.get(sandbox.oauth_url(), params={"grant_type": "refresh_token", "client_id": client_id,
                                                      "client_secret": secret,
                                                      "refresh_token": alpha["refresh_token"]}, timeout=0.1)


class TestAccessTokens:
    def test_expired_access_token_answers_expired_token(self, sandbox: SandboxControl, alpha: dict) -> None:
        sandbox.expire_tokens("alpha")
        response = call(alpha["client_endpoint"], "tasks.task.list", alpha["access_token"])
        assert response.status_code == 401
        assert response.json() == {"error": "expired_token",
                                   "error_description": "The access token provided has expired."}

    def test_access_ttl_is_a_portal_setting(self, sandbox: SandboxControl) -> None:
        """With `access_ttl=0` a token is expired as soon as it is issued; a refresh answers `expires_in` 0."""
        sandbox.add_portal("brief", access_ttl=0)
        tokens = sandbox.issue_tokens("brief")
        assert tokens["expires_in"] == "0"
        assert call(tokens["client_endpoint"], "tasks.task.list", tokens["access_token"]).json()["error"] == \
            "expired_token"

    def test_token_in_json_form_query_bearer_and_access_token_key(self, alpha: dict) -> None:
        endpoint, token = alpha["client_endpoint"], alpha["access_token"]
        answers = [
            requests.post(endpoint + "tasks.task.list", json={"auth": token}, timeout=TIMEOUT),
            requests.post(endpoint + "tasks.task.list", data={"auth": token}, timeout=TIMEOUT),
            requests.get(endpoint + "tasks.task.list.json", params={"auth": token}, timeout=TIMEOUT),
            requests.post(endpoint + "tasks.task.list", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT),
            requests.post(endpoint + "tasks.task.list", data={"access_token": token}, timeout=TIMEOUT),
        ]
        assert [answer.status_code for answer in answers] == [200] * 5

    def test_missing_unknown_and_foreign_tokens_are_refused(self, sandbox: SandboxControl, alpha: dict) -> None:
        sandbox.add_portal("beta")
        beta = sandbox.issue_tokens("beta")
        endpoint = alpha["client_endpoint"]
        missing = call(endpoint, "tasks.task.list", None)
        assert (missing.status_code, missing.json()["error"]) == (401, "NO_AUTH_FOUND")
        made_up = call(endpoint, "tasks.task.list", "0123456789abcdef")
        assert (made_up.status_code, made_up.json()["error"]) == (401, "invalid_token")
        foreign = call(endpoint, "tasks.task.list", beta["access_token"])
        assert (foreign.status_code, foreign.json()["error"]) == (401, "invalid_token")
        assert call(beta["client_endpoint"], "tasks.task.list", beta["access_token"]).status_code == 200

    def test_refused_calls_are_logged_and_do_not_spend_the_budget(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("tight", burst=1)
        tokens = sandbox.issue_tokens("tight")
        for _ in range(3):
            assert call(tokens["client_endpoint"], "tasks.task.list", "wrong").status_code == 401
        assert call(tokens["client_endpoint"], "tasks.task.list", tokens["access_token"]).status_code == 200
        assert [entry["error"] for entry in sandbox.requests(portal="tight")] == ["invalid_token"] * 3 + [None]

    def test_rest_v3_takes_the_token_in_the_json_body(self, sandbox: SandboxControl, alpha: dict) -> None:
        """`auth` authorises a REST 3.0 call and is not a parameter of the method."""
        task_id = sandbox.add_task(portal="alpha", TITLE="Through REST 3.0")
        url = alpha["client_endpoint"] + "api/tasks.task.get"
        response = requests.post(url, json={"id": task_id, "auth": alpha["access_token"]}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["item"]["title"] == "Through REST 3.0"
        refused = requests.post(url, json={"id": task_id}, timeout=TIMEOUT)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "NO_AUTH_FOUND"

    def test_every_webhook_method_works_on_an_app_portal(self, sandbox: SandboxControl, alpha: dict) -> None:
        """The same method handlers, on the portal's own data: tasks, time entries, userfields, batch."""
        task_id = sandbox.add_task(portal="alpha", TITLE="Billing")
        sandbox.add_entry(task_id, 3600, "work", portal="alpha")
        endpoint, token = alpha["client_endpoint"], alpha["access_token"]
        entries = result(endpoint, "task.elapseditem.getlist", token, TASKID=task_id)
        assert [entry["SECONDS"] for entry in entries] == ["3600"]
        fields = result(endpoint, "task.item.userfield.getlist", token)
        assert "UF_CRM_TASK" in [field["FIELD_NAME"] for field in fields]
        batch = result(endpoint, "batch", token, cmd={"one": f"tasks.task.get?taskId={task_id}"})
        assert batch["result"]["one"]["task"]["title"] == "Billing"
