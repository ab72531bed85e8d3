"""Which rules apply to a task: the rule's trigger, its ``match`` and the file's ``exemptions``."""

from __future__ import annotations

import datetime as dt

from bitrix.tasks import Task
from config.rules import Exemption, Match, Rule, RuleSet


def applies(ruleset: RuleSet, rule: Rule, task: Task, *, event_name: str | None, today: dt.date) -> bool:
    """True when ``rule`` should look at ``task`` for this trigger (an event name, or a sweep when None)."""
    triggered = event_name in rule.events if event_name else rule.sweep
    return triggered and matches(rule.match, task) and not exempt(ruleset.exemptions, rule.name, task, today)


def matches(match: Match, task: Task) -> bool:
    """AND of the keys given, OR within each list."""
    wanted = ((match.group_id, task.group_id), (match.responsible_id, task.responsible_id),
              (match.created_by, task.created_by), (match.status, task.status))
    return all(allowed is None or value in allowed for allowed, value in wanted)


def exempt(exemptions: list[Exemption], rule_name: str, task: Task, today: dt.date) -> bool:
    """True when an exemption in force covers this rule and task (each exemption ANDs its keys)."""
    return any(_covers(item, rule_name, task, today) for item in exemptions)


def _covers(item: Exemption, rule_name: str, task: Task, today: dt.date) -> bool:
    return ((item.until is None or today <= item.until)
            and (item.rules is None or rule_name in item.rules)
            and (item.task_id is None or task.id in item.task_id)
            and (item.group_id is None or task.group_id in item.group_id))
