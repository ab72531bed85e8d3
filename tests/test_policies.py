"""All three policies end to end through the sandbox: both modes, v3 and its fallback, scope, definitions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from redis import Redis

import keys

from .helpers import FORM, TEST_ADMIN_TOKEN, event_body, run_worker

BERLIN = ZoneInfo("Europe/Berlin")
MOSCOW = ZoneInfo("Europe/Moscow")
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}

DEADLINE_RULES = """
timezone: Europe/Berlin
holidays: {{country: DE, extra: ["2026-01-19"]}}
rules:
  - name: default-deadline
    policy: deadline
    mode: {mode}
    params:
      set_if_missing: {{workdays: 2, at: "18:00"}}
      max_ahead: {{days: 30}}
"""
USERFIELD_RULES = """
rules:
  - name: project-code
    policy: mandatory_userfields
    mode: {mode}
    params:
      fields:
        UF_PROJECT_CODE: {{default: "GEN-000"}}
        UF_COST_CENTER: {{}}
      enforce_definition: true
"""


def evaluate(app: Flask, task_id: int, event: str = "ONTASKUPDATE") -> None:
    answer = app.test_client().post("/bitrix24/events", data=event_body(task_id, event=event), content_type=FORM)
    assert answer.get_json()["status"] == "queued"
    run_worker(app)


def decisions(app: Flask, **filters: Any) -> list[dict[str, Any]]:
    return app.test_client().get("/audit", query_string=filters, headers=AUTH).get_json()["decisions"]


def fields(sandbox: Any) -> list[int]:
    """Define the two string fields the rules name; returns their definition ids."""
    return [sandbox.add_userfield(FIELD_NAME="UF_PROJECT_CODE", USER_TYPE_ID="string", MANDATORY="N", SORT=200,
                                  EDIT_FORM_LABEL="Project code"),
            sandbox.add_userfield(FIELD_NAME="UF_COST_CENTER", USER_TYPE_ID="string", MANDATORY="N")]


class TestDeadline:
    def test_missing_deadline_set_through_v3(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """The SPEC example: created Friday 15:00 Berlin (given in Moscow time), Monday off -> Wednesday 18:00."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN).astimezone(MOSCOW)
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=created)
        evaluate(app, task_id)
        assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)
        [write] = [r for r in sandbox.requests() if r["method"] == "tasks.task.update"]
        assert write["api"] == "v3" and write["params"] == {"id": task_id,
                                                            "fields": {"deadline": "2026-01-21T18:00:00+01:00"}}
        assert write["idempotency_key"].startswith("tw-")
        [decision] = decisions(app, task=task_id)
        assert (decision["entity"], decision["before"], decision["after"], decision["outcome"]) == (
            "deadline", None, "2026-01-21T18:00:00+01:00", "changed")

    def test_classic_fallback_remembered(self, make_app: Callable[..., Flask], sandbox: Any, redis: Redis) -> None:
        """Without v3 the classic form is used, and the portal's answer is remembered (one v3 probe only)."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        sandbox.configure(v3_enabled=False)
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)
        first, second = (sandbox.add_task(TITLE=f"t{i}", CREATED_DATE=created) for i in range(2))
        evaluate(app, first)
        evaluate(app, second)
        for task_id in (first, second):
            assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)
        v3_calls = [r for r in sandbox.requests() if r["api"] == "v3"]
        assert len(v3_calls) == 1 and v3_calls[0]["status"] == 404
        classic = [c for r in sandbox.requests() for c in r["commands"] if c["method"] == "tasks.task.update"]
        classic += [r for r in sandbox.requests() if r["api"] == "classic" and r["method"] == "tasks.task.update"]
        assert {str(c["params"]["fields"]["DEADLINE"]) for c in classic} == {"2026-01-21T18:00:00+01:00"}
        assert redis.get(keys.v3_support(app.extensions["taskwarden"].portal.id)) == b"0"

    def test_v3_refused_for_its_scope_falls_back_to_classic(self, make_app: Callable[..., Flask], sandbox: Any,
                                                            redis: Redis) -> None:
        """A webhook whose scopes do not cover REST 3.0 (``insufficient_scope``, as with only the ``task``
        scope ticked): the deadline goes through the classic method, and the answer is remembered."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        sandbox.fault("tasks.task.update", status=401, error="insufficient_scope",
                      description="The request requires higher privileges than provided by the webhook token")
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=created)
        evaluate(app, task_id)
        assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)
        assert [r["status"] for r in sandbox.requests() if r["api"] == "v3"] == [401]
        assert redis.get(keys.v3_support(app.extensions["taskwarden"].portal.id)) == b"0"

    def test_v3_write_without_classic_form_fails_on_a_portal_without_v3(self, make_app: Callable[..., Flask],
                                                                       sandbox: Any) -> None:
        """A batch of v3 writes meeting a portal without v3: writes with a classic form go classic, one
        without is reported as failed, never counted as written."""
        from bitrix import tasks
        from bitrix.batch import Command
        from workers.writes import send_writes

        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        sandbox.configure(v3_enabled=False)
        task_id = sandbox.add_task(TITLE="t")
        bare = Command("tasks.task.update", {"id": task_id, "fields": {"title": "x"}}, v3=True)
        errors = send_writes(app.extensions["taskwarden"], {
            "with": (tasks.set_deadline(task_id, "2026-01-21T18:00:00+01:00"), None), "without": (bare, None)})
        assert list(errors) == ["without"]
        assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)
        assert sandbox.task(task_id)["TITLE"] == "t"

    def test_max_ahead_clamps(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A deadline later than creation + 30 days is moved back to that bound."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        created = dt.datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN)
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=created, DEADLINE=created + dt.timedelta(days=90))
        evaluate(app, task_id)
        assert sandbox.task(task_id)["DEADLINE"] == dt.datetime(2026, 4, 1, 9, 30, tzinfo=BERLIN)

    def test_compliant_and_closed_tasks_untouched(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A deadline within the bound, and a completed task without one, are left alone: no write at all."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        created = dt.datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN)
        fine = sandbox.add_task(TITLE="fine", CREATED_DATE=created, DEADLINE=created + dt.timedelta(days=3))
        closed = sandbox.add_task(TITLE="done", CREATED_DATE=created, STATUS=5)
        evaluate(app, fine)
        evaluate(app, closed)
        assert sandbox.task(closed)["DEADLINE"] is None
        assert not [r for r in sandbox.requests() if r["method"] == "tasks.task.update"]
        assert decisions(app) == []

    def test_audit_mode_records_would_change(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """In audit mode nothing is written and the value that would be written is recorded."""
        app = make_app(DEADLINE_RULES.format(mode="audit"))
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN))
        evaluate(app, task_id)
        assert sandbox.task(task_id)["DEADLINE"] is None
        assert [(d["outcome"], d["after"], d["mode"]) for d in decisions(app)] == [
            ("would_change", "2026-01-21T18:00:00+01:00", "audit")]

    def test_dry_run_overrides_enforce(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """TASKWARDEN_DRY_RUN=1 makes an enforce rule behave as audit."""
        app = make_app(DEADLINE_RULES.format(mode="enforce"), taskwarden_dry_run=True)
        task_id = sandbox.add_task(TITLE="t", CREATED_DATE=dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN))
        evaluate(app, task_id)
        assert sandbox.task(task_id)["DEADLINE"] is None
        assert [d["outcome"] for d in decisions(app)] == ["would_change"]


class TestMandatoryUserfields:
    def test_default_written_and_violation_without_default(self, make_app: Callable[..., Flask],
                                                           sandbox: Any) -> None:
        """An empty field with a default gets it (classic update); one without a default is a violation."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="", UF_COST_CENTER=None)
        evaluate(app, task_id)
        assert sandbox.task(task_id)["UF_PROJECT_CODE"] == "GEN-000"
        assert sandbox.task(task_id)["UF_COST_CENTER"] in (None, "")
        [read] = [c for r in sandbox.requests() for c in r["commands"] if c["method"] == "tasks.task.list"][:1]
        assert {"UF_PROJECT_CODE", "UF_COST_CENTER"} <= set(read["params"]["select"])
        outcome = {d["entity"]: d["outcome"] for d in decisions(app)}
        assert outcome == {"field:UF_PROJECT_CODE": "changed", "field:UF_COST_CENTER": "violation"}

    def test_filled_fields_untouched(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Fields with values (even 0) are left alone and nothing is written."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="P-7", UF_COST_CENTER="0")
        evaluate(app, task_id)
        assert not [c for r in sandbox.requests() for c in r["commands"] if c["method"] == "tasks.task.update"]
        assert decisions(app) == []

    def test_audit_mode(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Audit mode records would_change with the default and writes nothing."""
        app = make_app(USERFIELD_RULES.format(mode="audit"))
        fields(sandbox)
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="", UF_COST_CENTER="cc")
        evaluate(app, task_id)
        assert sandbox.task(task_id)["UF_PROJECT_CODE"] == ""
        assert [(d["outcome"], d["after"]) for d in decisions(app)] == [("would_change", "GEN-000")]


class TestDefinitions:
    def test_definition_made_mandatory(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """reconcile makes each listed definition MANDATORY=Y, leaving its other settings as they were."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        ids = fields(sandbox)
        result = app.test_cli_runner().invoke(args=["reconcile"])
        assert result.exit_code == 0, result.output
        defs = {d["FIELD_NAME"]: d for d in (sandbox.userfield(i) for i in ids)}
        assert defs["UF_PROJECT_CODE"]["MANDATORY"] == "Y" and defs["UF_COST_CENTER"]["MANDATORY"] == "Y"
        assert str(defs["UF_PROJECT_CODE"]["SORT"]) == "200"
        updates = [r for r in sandbox.requests() if r["method"] == "task.item.userfield.update"]
        assert [u["params"][1] for u in updates] == [{"MANDATORY": "Y"}, {"MANDATORY": "Y"}]
        app.test_cli_runner().invoke(args=["reconcile"])  # second run: nothing left to change
        assert len([r for r in sandbox.requests() if r["method"] == "task.item.userfield.update"]) == 2

    def test_unknown_field_and_non_admin(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """An unknown field is an error decision; a non-admin webhook's update is not_allowed."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        sandbox.add_userfield(FIELD_NAME="UF_PROJECT_CODE", USER_TYPE_ID="string")
        sandbox.configure(is_admin=False)
        app.test_cli_runner().invoke(args=["reconcile"])
        outcome = {d["entity"]: (d["outcome"], d["detail"]) for d in decisions(app)}
        assert outcome["definition:UF_COST_CENTER"] == ("error", "no task field named UF_COST_CENTER")
        assert outcome["definition:UF_PROJECT_CODE"][0] == "not_allowed"

    def test_dry_run_flag(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """reconcile --dry-run records would_change and writes nothing."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        app.test_cli_runner().invoke(args=["reconcile", "--dry-run"])
        assert not [r for r in sandbox.requests() if r["method"] == "task.item.userfield.update"]
        assert {d["outcome"] for d in decisions(app)} == {"would_change"}


SCOPED_RULES = """
exemptions:
  - {{task_id: [{exempt_task}]}}
  - {{group_id: [7], rules: [cap], until: "{until}"}}
rules:
  - name: cap
    policy: elapsed_cap
    match: {{group_id: [12, 7], responsible_id: 5}}
    params: {{max_seconds: 100}}
"""


class TestScope:
    @pytest.mark.parametrize(("task_fields", "exempt_self", "until", "capped"), [
        ({"GROUP_ID": 12, "RESPONSIBLE_ID": 5}, False, "2000-01-01", True),
        ({"GROUP_ID": 12, "RESPONSIBLE_ID": 6}, False, "2000-01-01", False),   # responsible does not match
        ({"GROUP_ID": 3, "RESPONSIBLE_ID": 5}, False, "2000-01-01", False),    # group does not match
        ({"GROUP_ID": 12, "RESPONSIBLE_ID": 5}, True, "2000-01-01", False),    # task exempt
        ({"GROUP_ID": 7, "RESPONSIBLE_ID": 5}, False, "2999-12-31", False),    # group exempt until later
        ({"GROUP_ID": 7, "RESPONSIBLE_ID": 5}, False, "2000-01-01", True),     # that exemption expired
    ])
    def test_match_and_exemptions(self, make_app: Callable[..., Flask], sandbox: Any, task_fields: dict,
                                  exempt_self: bool, until: str, capped: bool) -> None:
        """match ANDs its keys and ORs within lists; exemptions apply until their date, then not."""
        task_id = sandbox.add_task(TITLE="t", **task_fields)
        entry_id = sandbox.add_entry(task_id, 500, "x")
        app = make_app(SCOPED_RULES.format(exempt_task=task_id if exempt_self else 999999, until=until))
        evaluate(app, task_id)
        assert sandbox.entry(entry_id)["SECONDS"] == (100 if capped else 500)


class TestReport:
    def test_open_tasks_and_recovery(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """Violations are listed per rule; once the task is fixed and evaluated again it leaves the report."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="P-1", UF_COST_CENTER="")
        evaluate(app, task_id)
        body = app.test_client().get("/report", headers=AUTH).get_json()
        [rule] = body["rules"]
        assert (rule["rule"], rule["open_tasks"], rule["by_outcome"]) == ("project-code", 1, {"violation": 1})
        assert rule["tasks"][0]["task_id"] == task_id
        printed = app.test_cli_runner().invoke(args=["report"]).output
        assert "project-code (mandatory_userfields, enforce): 1 task(s) open; violation 1" in printed
        sandbox.update_task(task_id, UF_COST_CENTER="CC-9")
        evaluate(app, task_id)
        assert app.test_client().get("/report", headers=AUTH).get_json()["rules"][0]["open_tasks"] == 0

    def test_a_repeated_violation_is_audited_once(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """The same violation found again (our own write's event, a second edit) stays in the report but is not
        audited again; once fixed and broken again, it is a new decision."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        task_id = sandbox.add_task(TITLE="t", UF_PROJECT_CODE="P-1", UF_COST_CENTER="")
        for _ in range(3):
            evaluate(app, task_id)
        violations = decisions(app, task=task_id, outcome="violation")
        assert [(d["entity"], d["detail"]) for d in violations] == [
            ("field:UF_COST_CENTER", "empty and no default configured")]
        assert app.test_client().get("/report", headers=AUTH).get_json()["rules"][0]["open_tasks"] == 1
        sandbox.update_task(task_id, UF_COST_CENTER="CC-9")
        evaluate(app, task_id)
        sandbox.update_task(task_id, UF_COST_CENTER="")
        evaluate(app, task_id)
        assert len(decisions(app, task=task_id, outcome="violation")) == 2

    def test_report_shows_what_the_workers_ran(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A CLI whose local rules file differs still shows the rules the workers evaluated, marked as such."""
        app = make_app(USERFIELD_RULES.format(mode="enforce"))
        fields(sandbox)
        evaluate(app, sandbox.add_task(TITLE="t", UF_PROJECT_CODE="P-1", UF_COST_CENTER=""))
        elsewhere = make_app()  # the default rules: no project-code rule
        printed = elsewhere.test_cli_runner().invoke(args=["report"]).output
        assert ("project-code (mandatory_userfields, enforce): 1 task(s) open; violation 1 "
                "[not in the local rules file: as the workers ran it]") in printed
        assert "empty and no default configured" in printed

    def test_report_needs_the_token(self, client: Any) -> None:
        """/report is behind the admin token like /audit."""
        assert client.get("/report").status_code == 401


class TestDeadlineBatches:
    def test_many_deadlines_share_v3_batches(self, make_app: Callable[..., Flask], sandbox: Any) -> None:
        """A sweep writing 60 deadlines sends two REST 3.0 batch requests (50 + 10), not 60 requests."""
        from workers.sweeps import run_sweep

        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)
        ids = [sandbox.add_task(TITLE=f"t{i}", CREATED_DATE=created) for i in range(60)]
        run_sweep(app.extensions["taskwarden"], "tasks")
        writes = [r for r in sandbox.requests() if r["api"] == "v3"]
        assert [(r["method"], len(r["commands"])) for r in writes] == [("batch", 50), ("batch", 10)]
        assert {sandbox.task(i)["DEADLINE"] for i in ids} == {dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)}

    def test_failed_v3_batch_falls_back_to_single_writes(self, make_app: Callable[..., Flask],
                                                         sandbox: Any) -> None:
        """An item failing aborts a v3 batch without saying which; each write is then sent alone."""
        from workers.sweeps import run_sweep

        app = make_app(DEADLINE_RULES.format(mode="enforce"))
        created = dt.datetime(2026, 1, 16, 15, 0, tzinfo=BERLIN)
        ids = [sandbox.add_task(TITLE=f"t{i}", CREATED_DATE=created) for i in range(3)]
        sandbox.fault("tasks.task.update", status=403, error="BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
                      envelope="v3", in_batch=True, times=1)
        run_sweep(app.extensions["taskwarden"], "tasks")
        v3 = [(r["method"], r["status"]) for r in sandbox.requests() if r["api"] == "v3"]
        assert v3[0][0] == "batch" and v3[0][1] == 403
        assert [m for m, _s in v3[1:]] == ["tasks.task.update"] * 3
        assert {sandbox.task(i)["DEADLINE"] for i in ids} == {dt.datetime(2026, 1, 21, 18, 0, tzinfo=BERLIN)}
