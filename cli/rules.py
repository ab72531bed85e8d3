"""``flask --app app rules check [FILE]``: validate a rules file and say in plain words what each rule does."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from config.rules import Match, Rule, RulesError, RuleSet
from policies import load_policy_rules, policy

rules_group = AppGroup("rules", help="Inspect the rules file.")


@rules_group.command("check")
@click.argument("file", required=False)
def check_command(file: str | None) -> None:
    """Validate FILE (default: RULES_FILE) and print one line per rule."""
    path = file or current_app.extensions["taskwarden"].settings.rules_file
    try:
        ruleset = load_policy_rules(path)
    except RulesError as exc:
        click.echo(f"{path}: invalid", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1) from None
    click.echo(f"{path}: {len(ruleset.rules)} rule(s), time zone {ruleset.timezone}")
    for rule in ruleset.rules:
        click.echo(f"  {describe_rule(ruleset, rule)}")


def describe_rule(ruleset: RuleSet, rule: Rule) -> str:
    """E.g. ``cap-time-entries: time entries over 8h 0m are clamped to 8h 0m, tasks in group 12 [enforce]``."""
    parts = [policy(rule.policy).describe(ruleset.params(rule))]
    scope = _scope(rule.match)
    if scope:
        parts.append(scope)
    triggers = [*rule.events, *(["sweeps"] if rule.sweep else [])]
    parts.append("on " + ", ".join(triggers))
    mode = "audit only: records, changes nothing" if rule.mode == "audit" else "enforce"
    return f"{rule.name}: {', '.join(parts)} [{mode}]"


def _scope(match: Match) -> str:
    labels = (("group", match.group_id), ("responsible", match.responsible_id),
              ("created by", match.created_by), ("status", match.status))
    found = [f"{label} {' or '.join(str(v) for v in values)}" for label, values in labels if values]
    return "tasks with " + " and ".join(found) if found else ""
