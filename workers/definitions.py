"""Make task field definitions ``MANDATORY: Y`` where a policy asks for it (``Policy.mandatory_definitions``;
e.g. ``mandatory_userfields`` with ``enforce_definition: true``).

Bitrix24 raises no event for field definitions, so this runs from sweeps and ``flask --app app reconcile``,
not from task events. Each field is looked up by FIELD_NAME; only MANDATORY is written.
"""

from __future__ import annotations

from audit import Decision
from bitrix import userfields
from bitrix.errors import AccessDenied, AuthError, BitrixError
from config.rules import Rule
from policies import policy
from runtime import Runtime
from workers.recording import record_decisions

DEFINITIONS_TASK_ID = 0
"""Decisions about definitions belong to no task; they are recorded under task 0."""


def enforce_definitions(rt: Runtime, *, cause: str = "sweep", rules: list[Rule] | None = None,
                        dry_run: bool = False) -> list[Decision]:
    """Check (and, in enforce mode, fix) every listed field's definition; returns the decisions."""
    wanted = {rule.name: _mandatory_fields(rt, rule) for rule in (rt.rules.rules if rules is None else rules)}
    rules = [rule for rule in (rt.rules.rules if rules is None else rules) if wanted[rule.name]]
    if not rules:
        return []
    found = userfields.definitions_by_name(rt.client.run(userfields.list_definitions()))
    decisions = [decision for rule in rules
                 for decision in _check_rule(rt, rule, wanted[rule.name], found, cause, dry_run)]
    record_decisions(rt, decisions, rules, [DEFINITIONS_TASK_ID])
    return decisions


def _mandatory_fields(rt: Runtime, rule: Rule) -> tuple[str, ...]:
    fields = policy(rule.policy).mandatory_definitions
    return fields(rt.rules.params(rule)) if fields is not None else ()


def _check_rule(rt: Runtime, rule: Rule, names: tuple[str, ...], found: dict[str, dict], cause: str,
                dry_run: bool) -> list[Decision]:
    dry = dry_run or rt.settings.taskwarden_dry_run or rule.mode == "audit"
    decisions = []
    for name in names:
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
