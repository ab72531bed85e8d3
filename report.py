"""The compliance report (SPEC section 7): per rule, the tasks currently out of compliance.

Kept current by every evaluation rather than computed from the audit: for each rule and each task
evaluated, the open decisions (anything but ``changed``) replace what was there, and a compliant task
is removed. So the report answers "what is wrong now", bounded by the number of tasks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from redis import Redis
from redis.typing import EncodableT, FieldT

import keys
from audit import Decision, as_record

OPEN_OUTCOMES = ("would_change", "violation", "not_allowed", "error")
DEFAULT_TASKS_PER_RULE = 100
COUNT_CAP = 10_000
"""Most report entries read per rule to count outcomes, so a huge backlog stays cheap to show."""


def update(redis: Redis, portal_id: str, rule_names: Iterable[str], task_ids: Iterable[int],
           decisions: list[Decision]) -> None:
    """Replace the report entries of these rules for these tasks with the open decisions among ``decisions``."""
    open_by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for decision in decisions:
        if decision.outcome in OPEN_OUTCOMES:
            open_by.setdefault((decision.rule, decision.task_id), []).append(as_record(decision))
    task_ids = list(task_ids)
    pipe = redis.pipeline(transaction=False)
    for rule in rule_names:  # one HSET and one HDEL per rule, however many tasks
        still_open: dict[FieldT, EncodableT] = {
            str(task_id): json.dumps(open_by[rule, task_id], default=str)
            for task_id in task_ids if (rule, task_id) in open_by}
        compliant = [str(task_id) for task_id in task_ids if (rule, task_id) not in open_by]
        if still_open:
            pipe.hset(keys.report(portal_id, rule), mapping=still_open)
        if compliant:
            pipe.hdel(keys.report(portal_id, rule), *compliant)
    pipe.execute()


def build(redis: Redis, portal_id: str, rules: Iterable[Any], limit: int = DEFAULT_TASKS_PER_RULE) -> dict[str, Any]:
    """Per rule: how many tasks are out of compliance, by outcome, and up to ``limit`` of them.

    ``by_outcome`` counts decisions over at most ``COUNT_CAP`` tasks; ``open_tasks`` is exact.
    """
    out = []
    for rule in rules:
        key = keys.report(portal_id, rule.name)
        tasks: list[dict[str, Any]] = []
        outcomes: Counter[str] = Counter()
        for seen, (field, raw) in enumerate(redis.hscan_iter(key, count=200)):
            if seen >= COUNT_CAP:
                break
            decisions = json.loads(raw)
            outcomes.update(d["outcome"] for d in decisions)
            if len(tasks) < limit:
                tasks.append({"task_id": int(field), "decisions": decisions})
        tasks.sort(key=lambda item: item["task_id"])
        out.append({"rule": rule.name, "policy": rule.policy, "mode": rule.mode, "open_tasks": redis.hlen(key),
                    "by_outcome": dict(outcomes), "tasks": tasks})
    return {"rules": out, "limit": limit}
