"""Application mode end to end: the sandbox plays Bitrix24 (several portals, the OAuth server, the installation
callback, bound handlers, the offline queue) and Taskwarden runs as it would, over real HTTP and real Redis."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from redis import Redis
from werkzeug.serving import make_server

import keys
from logging_setup import capture_output
from portals import registry
from workers.offline import drain

from .helpers import FORM, TEST_ADMIN_TOKEN, event_body, poll, run_worker

SECRET_KEY = Fernet.generate_key().decode()
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@pytest.fixture
def app_mode(make_app: Callable[..., Flask], sandbox: Any) -> Iterator[tuple[Flask, str]]:
    """Taskwarden in application mode, served over HTTP so that the sandbox can install it and post events."""
    with serving(make_app, sandbox) as running:
        yield running


@contextmanager
def serving(make_app: Callable[..., Flask], sandbox: Any, **settings: Any) -> Iterator[tuple[Flask, str]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client_id, client_secret = sandbox.app_credentials()
    app = make_app(b24_app_client_id=client_id, b24_app_client_secret=client_secret,
                   b24_oauth_url=sandbox.oauth_url(), b24_allowed_portals="127.0.0.1",
                   taskwarden_public_url=url, taskwarden_secret_key=SECRET_KEY, **settings)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, url
    server.shutdown()
    thread.join(timeout=5)


def installed(sandbox: Any, url: str, name: str) -> dict[str, Any]:
    portal = sandbox.add_portal(name)
    status, body = sandbox.install(name, f"{url}/bitrix24/install")
    assert status == 200, body
    return portal


def every_redis_value(redis: Redis) -> str:
    """Everything stored in the test database, as text (to look for secrets in plain text)."""
    parts = []
    for key in redis.scan_iter(count=500):
        raw_kind: Any = redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        if kind == "string":
            parts.append(str(redis.get(key)))
        elif kind == "hash":
            parts.append(str(redis.hgetall(key)))
        elif kind == "list":
            parts.append(str(redis.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(str(redis.smembers(key)))
        elif kind == "stream":
            parts.append(str(redis.xrange(key)))
    return "\n".join(parts)


class TestInstall:
    def test_confirmed_install_stores_sealed_tokens_and_binds_once(self, app_mode: tuple[Flask, str], sandbox: Any,
                                                                   redis: Redis) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        rt = app.extensions["taskwarden"]
        record = registry.load(redis, rt.box, alpha["member_id"])
        assert record is not None and record.status == "active"
        assert record.client_endpoint == alpha["client_endpoint"]
        events = sorted((b["event"], b["handler"]) for b in sandbox.bindings("alpha"))
        handler = f"{url}/bitrix24/events"
        assert events == [("ONAPPUNINSTALL", handler), ("ONTASKADD", handler), ("ONTASKUPDATE", handler)]
        assert sandbox.install("alpha", f"{url}/bitrix24/install")[0] == 200  # installed again: updated in place
        assert len(sandbox.bindings("alpha")) == 3
        stored = every_redis_value(redis)
        for secret in (record.access_token, record.refresh_token, record.application_token):
            assert secret not in stored

    def test_forged_install_is_refused_and_its_endpoint_never_called(self, app_mode: tuple[Flask, str],
                                                                    sandbox: Any, redis: Redis) -> None:
        _app, url = app_mode
        bait = sandbox.add_portal("bait")
        sandbox.clear_requests(portal="bait")
        status, _body = sandbox.forged_install(f"{url}/bitrix24/install", client_endpoint=bait["client_endpoint"])
        assert status == 403
        assert redis.smembers(keys.PORTALS) == set()
        assert sandbox.requests(portal="bait") == []

    def test_webhook_mode_has_no_install_path(self, client: Any) -> None:
        assert client.post("/bitrix24/install", data=b"event=ONAPPINSTALL", content_type=FORM).status_code == 404


class TestEvents:
    def test_each_portal_fixed_with_its_own_tokens(self, app_mode: tuple[Flask, str], sandbox: Any) -> None:
        app, url = app_mode
        alpha, beta = installed(sandbox, url, "alpha"), installed(sandbox, url, "beta")
        long_alpha = sandbox.add_entry(sandbox.add_task(TITLE="a", portal="alpha"), 40000, "call", portal="alpha")
        long_beta = sandbox.add_entry(sandbox.add_task(TITLE="b", portal="beta"), 50000, "call", portal="beta")
        poll(lambda: app.extensions["taskwarden"].queue().count == 2, "each portal's ONTASKADD to be queued")
        sandbox.clear_requests(portal="alpha")
        sandbox.clear_requests(portal="beta")
        run_worker(app)
        assert sandbox.entry(long_alpha, portal="alpha")["SECONDS"] == 28800
        assert sandbox.entry(long_beta, portal="beta")["SECONDS"] == 28800
        assert sandbox.requests(portal="alpha") and sandbox.requests(portal="beta")  # each through its own endpoint
        assert sandbox.requests() == []  # and none through the webhook portal
        text = app.test_client().get("/metrics").get_data(as_text=True)
        for member_id in (alpha["member_id"], beta["member_id"]):
            assert f'taskwarden_evaluations_total{{outcome="done",portal="{member_id}"}} 1.0' in text
        runner = app.test_cli_runner()
        every = runner.invoke(args=["audit"]).stdout
        assert alpha["member_id"] in every and beta["member_id"] in every
        only = runner.invoke(args=["audit", "--portal", alpha["member_id"]]).stdout
        assert alpha["member_id"] in only and beta["member_id"] not in only
        assert runner.invoke(args=["status"]).exit_code == 2  # which portal? (usage error)
        status = json.loads(runner.invoke(args=["status", "--json", "--portal", beta["member_id"]]).stdout)
        assert status["portal"] == beta["member_id"]

    def test_no_token_in_logs_metrics_audit_or_portals(self, app_mode: tuple[Flask, str], sandbox: Any,
                                                      redis: Redis) -> None:
        app, url = app_mode
        with capture_output() as lines:
            alpha = installed(sandbox, url, "alpha")
            sandbox.add_entry(sandbox.add_task(TITLE="a", portal="alpha"), 40000, "x", portal="alpha")
            poll(lambda: app.extensions["taskwarden"].queue().count == 1, "the event to be queued")
            sandbox.expire_tokens("alpha")  # a refresh too
            run_worker(app)
        record = registry.load(redis, app.extensions["taskwarden"].box, alpha["member_id"])
        assert record is not None
        client = app.test_client()
        shown = "\n".join([lines.getvalue(), client.get("/metrics").get_data(as_text=True),
                           client.get("/audit", headers=AUTH).get_data(as_text=True),
                           app.test_cli_runner().invoke(args=["portals", "--json"]).stdout, every_redis_value(redis)])
        client_secret = sandbox.app_credentials()[1]
        for secret in (record.access_token, record.refresh_token, record.application_token, client_secret, SECRET_KEY):
            assert secret not in shown

    def test_crossed_tokens_refused(self, app_mode: tuple[Flask, str], sandbox: Any) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        beta = installed(sandbox, url, "beta")
        body = urlencode([("event", "ONTASKUPDATE"), ("data[FIELDS_AFTER][ID]", "5"),
                          ("auth[member_id]", alpha["member_id"]),
                          ("auth[application_token]", beta["application_token"])]).encode()
        assert app.test_client().post("/bitrix24/events", data=body, content_type=FORM).status_code == 401


class TestTokens:
    def test_one_refresh_for_many_callers(self, app_mode: tuple[Flask, str], sandbox: Any) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        rt = app.extensions["taskwarden"]
        sandbox.expire_tokens("alpha")
        before = sandbox.oauth_calls("alpha")

        def call(_: int) -> Any:
            return rt.for_portal(alpha["member_id"]).client.call("tasks.task.list", {"start": -1}).result

        with ThreadPoolExecutor(8) as pool:
            assert all(isinstance(result, dict) for result in pool.map(call, range(8)))
        assert sandbox.oauth_calls("alpha") - before == 1

    def test_invalid_grant_marks_the_portal_and_stops_its_jobs(self, app_mode: tuple[Flask, str], sandbox: Any,
                                                               redis: Redis) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        rt = app.extensions["taskwarden"]
        sandbox.revoke_refresh("alpha")
        sandbox.expire_tokens("alpha")
        task_id = sandbox.add_task(TITLE="t", portal="alpha")
        from queueing import enqueue_evaluation

        enqueue_evaluation(rt.queue(), alpha["member_id"], task_id)
        run_worker(app)
        record = registry.load(redis, rt.box, alpha["member_id"])
        assert record is not None and record.status == "needs_reinstall"
        calls = sandbox.oauth_calls("alpha")
        enqueue_evaluation(rt.queue(), alpha["member_id"], task_id)
        run_worker(app)
        assert sandbox.oauth_calls("alpha") == calls  # nothing loops
        rows = json.loads(app.test_cli_runner().invoke(args=["portals", "--json"]).stdout)
        assert [(row["member_id"], row["status"]) for row in rows] == [(alpha["member_id"], "needs_reinstall")]


class TestUninstall:
    @pytest.mark.parametrize("clean", [False, True])
    def test_uninstall(self, app_mode: tuple[Flask, str], sandbox: Any, redis: Redis, clean: bool) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        rt = app.extensions["taskwarden"]
        sandbox.add_entry(sandbox.add_task(TITLE="a", portal="alpha"), 40000, "x", portal="alpha")
        poll(lambda: rt.queue().count == 1, "the event to be queued")
        run_worker(app)
        [delivery] = sandbox.uninstall("alpha", clean=clean)
        assert delivery["status"] == 200
        record = registry.load(redis, rt.box, alpha["member_id"])
        assert record is not None and (record.status, record.access_token, record.refresh_token) == ("removed", "", "")
        audit = app.test_client().get("/audit", query_string={"portal": alpha["member_id"]}, headers=AUTH).get_json()
        assert (audit["count"] == 0) is clean

    def test_wrong_token_changes_nothing(self, app_mode: tuple[Flask, str], sandbox: Any, redis: Redis) -> None:
        app, url = app_mode
        alpha = installed(sandbox, url, "alpha")
        body = urlencode([("event", "ONAPPUNINSTALL"), ("data[CLEAN]", "1"), ("auth[member_id]", alpha["member_id"]),
                          ("auth[application_token]", "not-the-token")]).encode()
        assert app.test_client().post("/bitrix24/events", data=body, content_type=FORM).status_code == 401
        record = registry.load(redis, app.extensions["taskwarden"].box, alpha["member_id"])
        assert record is not None and record.status == "active"


class TestOffline:
    def test_drain_killed_between_get_and_clear_rereads_the_batch(self, make_app: Callable[..., Flask],
                                                                   sandbox: Any, redis: Redis) -> None:
        client_id, client_secret = sandbox.app_credentials()
        app = make_app(b24_app_client_id=client_id, b24_app_client_secret=client_secret,
                       b24_oauth_url=sandbox.oauth_url(), b24_allowed_portals="127.0.0.1",
                       taskwarden_event_delivery="offline", taskwarden_secret_key=SECRET_KEY)
        rt = app.extensions["taskwarden"]
        gamma = sandbox.add_portal("gamma")
        from handlers.installs import install

        install(rt, {k: str(v) for k, v in sandbox.issue_tokens("gamma").items()})
        assert {b["event"] for b in sandbox.bindings("gamma") if b["offline"]} == {"ONTASKADD", "ONTASKUPDATE"}
        tasks = [sandbox.add_task(TITLE=f"t{i}", portal="gamma") for i in range(3)]
        view = rt.for_portal(gamma["member_id"])
        reserved = view.client.call("event.offline.get", {"clear": 0, "limit": 50}).result
        redis.sadd(keys.offline_batches(gamma["member_id"]), reserved["process_id"])  # the killed drain's note
        assert drain(view)["queued"] == len(tasks)
        assert sandbox.offline_rows("gamma") == []
        assert {job.kwargs["task_id"] for job in rt.queue().jobs} == set(tasks)


class TestFairness:
    def test_a_portal_out_of_budget_does_not_hold_the_workers(self, app_mode: tuple[Flask, str], sandbox: Any,
                                                              redis: Redis) -> None:
        """Alpha's budget is spent for a minute (e.g. after a 503 storm): its job steps back in the queue instead
        of sleeping in a worker, and beta's task is fixed meanwhile."""
        app, url = app_mode
        alpha, _beta = installed(sandbox, url, "alpha"), installed(sandbox, url, "beta")
        long_alpha = sandbox.add_entry(sandbox.add_task(TITLE="a", portal="alpha"), 40000, "x", portal="alpha")
        long_beta = sandbox.add_entry(sandbox.add_task(TITLE="b", portal="beta"), 40000, "x", portal="beta")
        rt = app.extensions["taskwarden"]
        poll(lambda: rt.queue().count == 2, "both events to be queued")
        seconds, _micros = redis.time()
        redis.set(keys.budget(alpha["member_id"]), (seconds + 120) * 1000, px=180_000)  # a full bucket, draining
        sandbox.clear_requests(portal="alpha")
        run_worker(app)
        assert sandbox.entry(long_beta, portal="beta")["SECONDS"] == 28800
        assert sandbox.entry(long_alpha, portal="alpha")["SECONDS"] == 40000
        assert sandbox.requests(portal="alpha") == []
        assert len(rt.queue().scheduled_job_registry) == 1  # alpha's evaluation, for when its budget has room



class TestPerPortalRules:
    def test_rules_dir_overrides_rules_file_for_one_portal(self, make_app: Callable[..., Flask], sandbox: Any,
                                                           tmp_path: Path) -> None:
        """RULES_DIR/<member_id>.yaml replaces RULES_FILE for that portal only."""
        rules_dir = tmp_path / "rules.d"
        rules_dir.mkdir()
        with serving(make_app, sandbox, rules_dir=str(rules_dir)) as (app, url):
            alpha, _beta = installed(sandbox, url, "alpha"), installed(sandbox, url, "beta")
            (rules_dir / f"{alpha['member_id']}.yaml").write_text(
                "rules:\n  - {name: short-cap, policy: elapsed_cap, params: {max_seconds: 3600}}\n")
            in_alpha = sandbox.add_entry(sandbox.add_task(TITLE="a", portal="alpha"), 5000, "x", portal="alpha")
            in_beta = sandbox.add_entry(sandbox.add_task(TITLE="b", portal="beta"), 5000, "x", portal="beta")
            poll(lambda: app.extensions["taskwarden"].queue().count == 2, "both events to be queued")
            run_worker(app)
            assert sandbox.entry(in_alpha, portal="alpha")["SECONDS"] == 3600
            assert sandbox.entry(in_beta, portal="beta")["SECONDS"] == 5000  # the default cap is 8 h


def test_events_while_redis_is_down_are_spooled_and_checked_once_it_is_back(make_app: Callable[..., Flask],
                                                                           sandbox: Any, own_redis: Any) -> None:
    """A process that cannot look the portal up (Redis down, the portal not in its memory) spools a task event
    with its token's digest, answers 202, and checks the token when Redis answers: the right one is queued, a
    forged one refused. The spool never holds the token itself."""
    from handlers import installs

    with serving(make_app, sandbox, redis_url=own_redis.url) as (app, url):
        portal = installed(sandbox, url, "alpha")
        member, token = portal["member_id"], portal["application_token"]
        installs._views.clear()  # this process has not seen the portal yet
        Redis.from_url(own_redis.url).config_set("save", "3600 1")  # written when stopped, read at start
        own_redis.stop()
        client = app.test_client()
        answers = [client.post("/bitrix24/events", data=event_body(task_id, token=sent, member_id=member),
                               content_type=FORM) for task_id, sent in ((101, token), (102, "forged-token"))]
        assert [(a.status_code, a.get_json()["status"]) for a in answers] == [(202, "spooled")] * 2
        spool = app.extensions["taskwarden_spool"]
        assert token not in spool.path.read_text()
        own_redis.start()
        poll(lambda: not spool.pending_files(), "the spool to drain", timeout=20)
        redis = Redis.from_url(own_redis.url)
        assert {int(task) for task in redis.hkeys(keys.waiting(member))} == {101}
