"""The audit trail in Redis: filters, newest first, bounded retention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from redis import Redis

import audit
import keys
from audit import Decision


def decision(task_id: int, rule: str = "cap", outcome: str = "changed") -> Decision:
    return Decision(rule, "elapsed_cap", "enforce", task_id, f"entry:{task_id}", 36000, 28800, outcome, "event")


class TestAuditTrail:
    def test_filters_and_order(self, redis: Redis) -> None:
        """Queries filter by task, rule and outcome and return the newest first."""
        audit.record(redis, "p", [decision(1), decision(2, rule="other"), decision(1, outcome="error")])
        assert [d["outcome"] for d in audit.query(redis, "p", task=1)] == ["error", "changed"]
        assert [d["task_id"] for d in audit.query(redis, "p", rule="other")] == [2]
        assert [d["task_id"] for d in audit.query(redis, "p", outcome="changed")] == [2, 1]
        assert len(audit.query(redis, "p", limit=1)) == 1

    def test_retention(self, redis: Redis) -> None:
        """The trail keeps at most the configured number of decisions, dropping the oldest."""
        for start in range(0, 130, 10):
            audit.record(redis, "p", [decision(task_id) for task_id in range(start, start + 10)], max_decisions=100)
        assert redis.xlen(keys.audit("p")) == 100
        assert audit.query(redis, "p", limit=1000)[-1]["task_id"] == 30

    def test_paging_past_one_page(self, redis: Redis) -> None:
        """A filter that matches only old entries is still found across pages of the stream."""
        audit.record(redis, "p", [decision(7, rule="rare")] + [decision(i) for i in range(1200)])
        assert [d["task_id"] for d in audit.query(redis, "p", rule="rare")] == [7]


class TestUnknownTasks:
    def test_a_flood_of_unknown_tasks_keeps_the_trail(self, make_app: Callable[..., Flask], sandbox: Any,
                                                      redis: Redis) -> None:
        """Decisions about tasks the portal does not show go to a short stream of their own: a flood of them
        leaves the trail's real decisions where they are, and each is still found by task."""
        from workers.evaluation import Trigger, evaluate_tasks

        app = make_app(taskwarden_audit_max_decisions=100)
        rt = app.extensions["taskwarden"]
        task_id = sandbox.add_task(TITLE="t")
        sandbox.add_entry(task_id, 40000, "long")
        evaluate_tasks(rt, [task_id], Trigger("event", "ONTASKUPDATE"))
        unknown = list(range(9_000_001, 9_000_301))
        evaluate_tasks(rt, unknown, Trigger("event", "ONTASKUPDATE"))
        assert [d["task_id"] for d in audit.query(rt.redis, rt.portal.id, outcome="changed")] == [task_id]
        [gone] = audit.query(rt.redis, rt.portal.id, task=unknown[7])
        assert (gone["outcome"], gone["detail"]) == ("error", audit.TASK_NOT_FOUND)
        assert redis.xlen(keys.audit(rt.portal.id)) == 1
        assert redis.xlen(keys.audit_unknown(rt.portal.id)) == len(unknown)
