"""Where a decision goes once made: the audit trail, the compliance report and the metrics, together.

A decision that repeats the open one the report already holds for its task, rule and entity (the same
violation found again, as when our own write's event re-evaluates the task) updates the report but is not
audited or counted a second time: the trail records what changed, not how often it was looked at.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import audit
import keys
import metrics
import report
from audit import Decision
from config.rules import Rule
from runtime import Runtime


def record_decisions(rt: Runtime, decisions: list[Decision], rules: Iterable[Rule], task_ids: Iterable[int]) -> None:
    """Audit the new ``decisions``, make the report of these rules for these tasks reflect them all (tasks
    without an open decision are compliant now), count the new ones by rule and outcome, and count those a
    sweep found first that events should have brought (``missed_by_events``)."""
    fresh = _not_already_open(rt, decisions)
    audit.record(rt.redis, rt.portal.id, fresh, rt.settings.taskwarden_audit_max_decisions)
    report.update(rt.redis, rt.portal.id, rules, task_ids, decisions)
    for (rule_name, outcome), count in Counter((d.rule, d.outcome) for d in fresh).items():
        metrics.count(rt.portal.id, "decisions", count, rule=rule_name, outcome=outcome)
    for rule_name, count in Counter(d.rule for d in fresh if d.missed_by_events).items():
        rt.redis.hincrby(keys.missed_by_events(rt.portal.id), rule_name, count)


_SAME = ("entity", "outcome", "before", "after", "detail")


def _not_already_open(rt: Runtime, decisions: list[Decision]) -> list[Decision]:
    """The decisions that are not a repeat of an open one the report holds (compared as stored)."""
    reported = [d for d in decisions if d.outcome in report.OPEN_OUTCOMES]
    if not reported:
        return decisions
    held = report.open_decisions(rt.redis, rt.portal.id, {(d.rule, d.task_id) for d in reported})
    return [d for d in decisions if d.outcome not in report.OPEN_OUTCOMES or not _repeats(d, held)]


def _repeats(decision: Decision, held: dict[tuple[str, int], list[Any]]) -> bool:
    stored = json.loads(json.dumps(audit.as_record(decision), default=str))
    return any(all(previous.get(name) == stored[name] for name in _SAME)
               for previous in held.get((decision.rule, decision.task_id), []))
