"""The compliance report (SPEC section 7): per rule, the tasks currently out of compliance.

Kept current by every evaluation rather than computed from the audit: for each rule and each task
evaluated, the open decisions (anything but ``changed``) replace what was there, and a compliant task
is removed. So the report answers "what is wrong now", bounded by the number of tasks.

The rules it covers are the ones the workers evaluated (their policy and mode recorded with their
decisions), not the rules file of the process that reads it: a CLI whose local rules differ still shows
what the service did.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from redis import Redis
from redis.typing import EncodableT, FieldT

import keys
from audit import Decision, as_record

OPEN_OUTCOMES = ("would_change", "violation", "not_allowed", "error")
DEFAULT_TASKS_PER_RULE = 100
COUNT_CAP = 10_000
"""Most report entries read per rule to count outcomes, so a huge backlog stays cheap to show."""


def update(redis: Redis, portal_id: str, rules: Iterable[Any], task_ids: Iterable[int],
           decisions: list[Decision]) -> None:
    """Replace the report entries of these rules for these tasks with the open decisions among ``decisions``,
    and record each rule's policy and mode as the workers ran it."""
    open_by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for decision in decisions:
        if decision.outcome in OPEN_OUTCOMES:
            open_by.setdefault((decision.rule, decision.task_id), []).append(as_record(decision))
    task_ids = list(task_ids)
    rules = list(rules)
    pipe = redis.pipeline(transaction=False)
    if rules:
        pipe.hset(keys.report_rules(portal_id), mapping={
            rule.name: json.dumps({"policy": rule.policy, "mode": rule.mode}) for rule in rules})
    for rule in (rule.name for rule in rules):  # one HSET and one HDEL per rule, however many tasks
        still_open: dict[FieldT, EncodableT] = {
            str(task_id): json.dumps(open_by[rule, task_id], default=str)
            for task_id in task_ids if (rule, task_id) in open_by}
        compliant = [str(task_id) for task_id in task_ids if (rule, task_id) not in open_by]
        if still_open:
            pipe.hset(keys.report(portal_id, rule), mapping=still_open)
        if compliant:
            pipe.hdel(keys.report(portal_id, rule), *compliant)
    pipe.execute()


def open_decisions(redis: Redis, portal_id: str, pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
    """The open decisions the report holds now for these (rule, task) pairs (absent: compliant)."""
    by_rule: dict[str, list[int]] = {}
    for rule, task_id in pairs:
        by_rule.setdefault(rule, []).append(task_id)
    if not by_rule:
        return {}
    pipe = redis.pipeline(transaction=False)
    for rule, task_ids in by_rule.items():
        pipe.hmget(keys.report(portal_id, rule), [str(task_id) for task_id in task_ids])
    found: dict[tuple[str, int], list[Any]] = {}
    for (rule, task_ids), values in zip(by_rule.items(), pipe.execute(), strict=True):
        for task_id, raw in zip(task_ids, values, strict=True):
            if raw is not None:
                found[rule, task_id] = json.loads(raw)
    return found


def build(redis: Redis, portal_id: str, limit: int = DEFAULT_TASKS_PER_RULE,
          local_rules: Iterable[Any] = ()) -> dict[str, Any]:
    """Per rule the workers evaluated: how many tasks are out of compliance, by outcome, and up to ``limit``
    of them. ``local_rules`` (the reader's rules file) adds its rules not evaluated yet, and marks the
    evaluated rules it does not know (``in_local_rules``).

    ``by_outcome`` counts decisions over at most ``COUNT_CAP`` tasks; ``open_tasks`` is exact.
    """
    local = {rule.name: {"policy": rule.policy, "mode": rule.mode} for rule in local_rules}
    recorded = {_text(name): json.loads(meta) for name, meta in redis.hgetall(keys.report_rules(portal_id)).items()}
    out = []
    for name, meta in sorted((local | recorded).items()):
        rule = _Recorded(name, meta.get("policy", "?"), meta.get("mode", "?"), name in local or not local)
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
                    "by_outcome": dict(outcomes), "tasks": tasks, "in_local_rules": rule.in_local_rules})
    return {"rules": out, "limit": limit}


class _Recorded(NamedTuple):
    name: str
    policy: str
    mode: str
    in_local_rules: bool


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
