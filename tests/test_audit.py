"""The audit trail in Redis: filters, newest first, bounded retention."""

from __future__ import annotations

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
