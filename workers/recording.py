"""Where a decision goes once made: the audit trail, the compliance report and the metrics, together."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import audit
import keys
import metrics
import report
from audit import Decision
from runtime import Runtime


def record_decisions(rt: Runtime, decisions: list[Decision], rule_names: Iterable[str],
                     task_ids: Iterable[int]) -> None:
    """Audit ``decisions``, make the report of these rules for these tasks reflect them (tasks without an
    open decision are compliant now), count them by rule and outcome, and count those a sweep found first
    that events should have brought (``missed_by_events``)."""
    audit.record(rt.redis, rt.portal.id, decisions, rt.settings.taskwarden_audit_max_decisions)
    report.update(rt.redis, rt.portal.id, rule_names, task_ids, decisions)
    for (rule_name, outcome), count in Counter((d.rule, d.outcome) for d in decisions).items():
        metrics.count(rt.portal.id, "decisions", count, rule=rule_name, outcome=outcome)
    for rule_name, count in Counter(d.rule for d in decisions if d.missed_by_events).items():
        rt.redis.hincrby(keys.missed_by_events(rt.portal.id), rule_name, count)
