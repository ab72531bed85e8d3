"""One plain-language line per rule, for ``flask --app app rules check``."""

from __future__ import annotations

from config.rules import Match, Rule, RuleSet


def describe_rule(ruleset: RuleSet, rule: Rule) -> str:
    """E.g. ``cap-time-entries: time entries over 8h 0m are clamped to 8h 0m, tasks in group 12 [enforce]``."""
    from workers.policies import policy  # policies import config; import late to keep config a leaf

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
