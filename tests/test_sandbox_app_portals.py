"""Application mode over real HTTP: several portals in one sandbox, each with its own data, budget and log."""

from __future__ import annotations

import requests

from sandbox.apps import member_id_of
from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox, start_in_thread
from tests.test_sandbox_app_support import TIMEOUT, call, result


def tokens_for(sandbox: SandboxControl, name: str, **settings: object) -> dict:
    sandbox.add_portal(name, **settings)  # type: ignore[arg-type]
    return sandbox.issue_tokens(name)


class TestSeveralPortals:
    def test_identity_is_derived_from_the_name(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        alpha = sandbox.add_portal("alpha")
        beta = sandbox.add_portal("beta")
        assert alpha["member_id"] == member_id_of("alpha") != beta["member_id"]
        assert len(alpha["member_id"]) == 32 and int(alpha["member_id"], 16) >= 0
        assert alpha["domain"] == "alpha.sandbox.bitrix24.test"
        assert alpha["client_endpoint"] == sandbox_server.client_endpoint("alpha")
        assert alpha["application_token"] != beta["application_token"]
        assert [item["name"] for item in sandbox.apps()["portals"]] == ["alpha", "beta"]

    def test_data_is_separate(self, sandbox: SandboxControl) -> None:
        alpha, beta = tokens_for(sandbox, "alpha"), tokens_for(sandbox, "beta")
        first = sandbox.add_task(portal="alpha", TITLE="Alpha's")
        sandbox.add_entry(first, 600, portal="alpha")
        assert sandbox.add_task(portal="beta", TITLE="Beta's") == first  # ids count per portal
        assert sandbox.task(first, portal="alpha")["TITLE"] == "Alpha's"
        assert sandbox.entries(portal="beta") == []
        listed = result(beta["client_endpoint"], "tasks.task.list", beta["access_token"], select=["ID", "TITLE"])
        assert [task["title"] for task in listed["tasks"]] == ["Beta's"]
        assert len(result(alpha["client_endpoint"], "task.elapseditem.getlist", alpha["access_token"],
                          TASKID=first)) == 1
        webhook_task = requests.get(f"{sandbox.base_url}/_sandbox/tasks/{first}", timeout=TIMEOUT)
        assert webhook_task.status_code == 404  # the webhook portal saw none of it

    def test_budgets_and_request_logs_are_separate(self, sandbox: SandboxControl) -> None:
        small = tokens_for(sandbox, "small", burst=2, rate=0.01)
        roomy = tokens_for(sandbox, "roomy")
        statuses = [call(small["client_endpoint"], "tasks.task.list", small["access_token"]).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 503]
        assert call(small["client_endpoint"], "tasks.task.list", small["access_token"]).json()["error"] == \
            "QUERY_LIMIT_EXCEEDED"
        assert call(roomy["client_endpoint"], "tasks.task.list", roomy["access_token"]).status_code == 200
        assert [entry["status"] for entry in sandbox.requests(portal="small")] == [200, 200, 503, 503]
        assert len(sandbox.requests(portal="roomy")) == 1
        assert sandbox.requests() == []
        sandbox.clear_requests(portal="small")
        assert sandbox.requests(portal="small") == []

    def test_faults_and_settings_are_per_portal(self, sandbox: SandboxControl) -> None:
        alpha, beta = tokens_for(sandbox, "alpha"), tokens_for(sandbox, "beta")
        sandbox.fault("tasks.task.list", status=500, portal="alpha")
        assert call(alpha["client_endpoint"], "tasks.task.list", alpha["access_token"]).status_code == 500
        assert call(beta["client_endpoint"], "tasks.task.list", beta["access_token"]).status_code == 200
        sandbox.configure(portal="beta", v3_enabled=False)
        assert sandbox.config(portal="beta")["v3_enabled"] is False
        assert sandbox.config()["v3_enabled"] is True

    def test_seeded_portal(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("demo", seed="demo")
        assert sandbox.task(5, portal="demo")["GROUP_ID"] == 7


class TestControl:
    def test_reset_removes_every_portal(self, sandbox: SandboxControl) -> None:
        alpha = tokens_for(sandbox, "alpha")
        sandbox.reset()
        assert sandbox.apps()["portals"] == []
        gone = call(alpha["client_endpoint"], "tasks.task.list", alpha["access_token"])
        assert (gone.status_code, gone.json()["error"]) == (404, "PORTAL_NOT_FOUND")

    def test_reset_creates_the_startup_portals_afresh(self, sandbox: SandboxControl) -> None:
        sandbox.reset(portals="gamma, delta")
        assert [item["name"] for item in sandbox.apps()["portals"]] == ["gamma", "delta"]
        sandbox.add_task(portal="gamma")
        sandbox.reset(portals="gamma")
        assert sandbox.portal_info("gamma")["installed"] is False
        assert sandbox.entries(portal="gamma") == []

    def test_unknown_portal_and_portal_reset_are_refused(self, sandbox: SandboxControl) -> None:
        assert requests.get(sandbox.base_url + "/_sandbox/config", params={"portal": "nope"},
                            timeout=TIMEOUT).status_code == 404
        sandbox.add_portal("alpha")
        assert requests.post(sandbox.base_url + "/_sandbox/reset", params={"portal": "alpha"}, json={},
                             timeout=TIMEOUT).status_code == 400

    def test_bad_and_taken_names(self, sandbox: SandboxControl) -> None:
        sandbox.add_portal("alpha")
        for name in ("alpha", "Not_A_Label", ""):
            answer = requests.post(sandbox.base_url + "/_sandbox/apps/portals", json={"name": name}, timeout=TIMEOUT)
            assert answer.status_code == 400

    def test_remove_portal(self, sandbox: SandboxControl) -> None:
        alpha = tokens_for(sandbox, "alpha")
        sandbox.remove_portal("alpha")
        assert call(alpha["client_endpoint"], "tasks.task.list", alpha["access_token"]).status_code == 404

    def test_credentials_and_urls(self, sandbox: SandboxControl, sandbox_server: RunningSandbox) -> None:
        assert sandbox.oauth_url() == sandbox_server.oauth_url == f"{sandbox_server.url}/oauth/token/"
        assert sandbox.app_credentials() == (sandbox_server.config.app_client_id,
                                             sandbox_server.config.app_client_secret)


def test_startup_portals_from_the_config() -> None:
    """`--portals alpha,beta` (the `portals` setting) creates them when the sandbox starts."""
    running = start_in_thread(SandboxConfig(portals="alpha,beta", app_client_id="app.x", app_client_secret="s"))
    try:
        control = SandboxControl(running.url)
        assert [item["name"] for item in control.apps()["portals"]] == ["alpha", "beta"]
        assert control.app_credentials() == ("app.x", "s")
        assert control.apps()["portals"][0]["client_endpoint"] == f"{running.url}/portals/alpha/rest/"
    finally:
        running.stop()
