"""Make the definitions of mandatory task fields ``MANDATORY: Y`` (``enforce_definition: true``).

Bitrix24 raises no event for field definitions, so this runs from sweeps and ``flask --app app reconcile``,
not from task events. Each field is looked up by FIELD_NAME; only MANDATORY is written.
"""

from __future__ import annotations

import audit
import metrics
import report
from audit import Decision
from bitrix import userfields
from bitrix.errors import AccessDenied, AuthError, BitrixError
from config.rules import MandatoryUserfieldsParams, Rule
from runtime import Runtime

DEFINITIONS_TASK_ID = 0
"""Decisions about definitions belong to no task; they are recorded under task 0."""


def enforce_definitions(rt: Runtime, *, cause: str = "sweep", rules: list[Rule] | None = None,
                        dry_run: bool = False) -> list[Decision]:
    """Check (and, in enforce mode, fix) every listed field's definition; returns the decisions."""
    rules = [rule for rule in (rt.rules.rules if rules is None else rules) if rule.policy == "mandatory_userfields"
             and rt.rules.params(rule).enforce_definition]
    if not rules:
        return []
    found = userfields.definitions_by_name(rt.client.run(userfields.list_definitions()))
    decisions = [decision for rule in rules for decision in _check_rule(rt, rule, found, cause, dry_run)]
    audit.record(rt.redis, rt.portal.id, decisions, rt.settings.taskwarden_audit_max_decisions)
    for decision in decisions:
        metrics.count(rt.portal.id, "decisions", rule=decision.rule, outcome=decision.outcome)
    report.update(rt.redis, rt.portal.id, [rule.name for rule in rules], [DEFINITIONS_TASK_ID], decisions)
    return decisions


def _check_rule(rt: Runtime, rule: Rule, found: dict[str, dict], cause: str, dry_run: bool) -> list[Decision]:
    params: MandatoryUserfieldsParams = rt.rules.params(rule)
    dry = dry_run or rt.settings.taskwarden_dry_run or rule.mode == "audit"
    decisions = []
    for name in params.fields:
        definition = found.get(name)
        if definition is None:
            decisions.append(_decision(rule, name, None, None, "error", cause, dry, f"no task field named {name}"))
        elif definition.get("MANDATORY") != "Y":
            decisions.append(_make_mandatory(rt, rule, name, definition, cause, dry))
    return decisions


def _make_mandatory(rt: Runtime, rule: Rule, name: str, definition: dict, cause: str, dry: bool) -> Decision:
    before = definition.get("MANDATORY")
    if dry:
        return _decision(rule, name, before, "Y", "would_change", cause, dry)
    try:
        rt.client.run(userfields.make_mandatory(int(definition["ID"])))
    except BitrixError as error:
        outcome = "not_allowed" if isinstance(error, AccessDenied | AuthError) else "error"
        return _decision(rule, name, before, "Y", outcome, cause, dry, str(error))
    return _decision(rule, name, before, "Y", "changed", cause, dry)


def _decision(rule: Rule, name: str, before: object, after: object, outcome: str, cause: str, dry: bool,
              detail: str = "") -> Decision:
    return Decision(rule=rule.name, policy=rule.policy, mode="audit" if dry else rule.mode,
                    task_id=DEFINITIONS_TASK_ID, entity=f"definition:{name}", before=before, after=after,
                    outcome=outcome, cause=cause, detail=detail)
