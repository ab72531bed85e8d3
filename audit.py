"""The audit trail (SPEC section 7): every decision, in a capped Redis stream per portal.

Written by workers, read by ``GET /audit`` and ``flask --app app audit``. Values are the entity's own
(seconds, comment text, a deadline); no secret ever reaches a decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass

__all__ = ["Decision", "as_record", "query", "record"]
from typing import Any

from redis import Redis
from redis.client import Pipeline

import keys
from logging_setup import redact_text

DEFAULT_AUDIT_MAX_DECISIONS = 100_000
"""Decisions kept per portal (TASKWARDEN_AUDIT_MAX_DECISIONS); the oldest are trimmed."""
OUTCOMES = ("changed", "would_change", "violation", "not_allowed", "error")
SCAN_LIMIT = 20_000
"""Most stream entries one query reads while filtering, so a rare filter cannot scan forever."""
TASK_NOT_FOUND = "task not found or not visible to the webhook's user"
"""The detail of a decision about a task the portal does not show (deleted, or never ours)."""
UNKNOWN_TASKS_KEPT = 1_000
"""Decisions about tasks the portal does not show, kept apart in a stream of their own: a flood of events for
unknown tasks must not push the decisions that matter out of the trail's cap."""


@dataclass(frozen=True)
class Decision:
    """What one rule decided about one entity of one task, and what came of it."""

    rule: str
    policy: str
    mode: str
    task_id: int
    entity: str
    before: Any
    after: Any
    outcome: str
    cause: str
    event_id: str | None = None
    detail: str = ""
    time: str = ""
    missed_by_events: bool = False


_FIELDS = tuple(field.name for field in dataclasses.fields(Decision))


def record(redis: Redis | Pipeline, portal_id: str, decisions: list[Decision],
           max_decisions: int = DEFAULT_AUDIT_MAX_DECISIONS) -> None:
    """Append decisions to the portal's trail, trimming it to about ``max_decisions``."""
    if not decisions:
        return
    pipe = redis.pipeline(transaction=False) if isinstance(redis, Redis) else redis
    for decision in decisions:
        unknown = decision.detail == TASK_NOT_FOUND
        pipe.xadd(keys.audit_unknown(portal_id) if unknown else keys.audit(portal_id),
                  {"d": json.dumps(as_record(decision), default=str)},
                  maxlen=UNKNOWN_TASKS_KEPT if unknown else max_decisions, approximate=False)
    if pipe is not redis:
        pipe.execute()


def as_record(decision: Decision) -> dict[str, Any]:
    """A decision as stored and shown anywhere: timestamped, and its detail (often the portal's own
    error text) redacted, since a portal may echo a request URL and so the webhook secret."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    # Not dataclasses.asdict: it deep-copies every value, a good part of a pass's CPU for thousands of decisions.
    return {name: getattr(decision, name) for name in _FIELDS} | {"time": decision.time or now,
                                                                "detail": redact_text(decision.detail)}


def query(redis: Redis, portal_id: str, *, task: int | None = None, rule: str | None = None,
          outcome: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Decisions newest first, filtered by task, rule and outcome (both streams: the trail and the decisions
    about tasks the portal does not show)."""
    found = [*_query_stream(redis, keys.audit(portal_id), task, rule, outcome, limit),
             *_query_stream(redis, keys.audit_unknown(portal_id), task, rule, outcome, limit)]
    return sorted(found, key=lambda decision: decision["time"], reverse=True)[:limit]


def _query_stream(redis: Redis, key: str, task: int | None, rule: str | None, outcome: str | None,
                  limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    last: bytes | str = "+"
    scanned = 0
    while len(found) < limit and scanned < SCAN_LIMIT:
        page: list[Any] = redis.xrevrange(key, max=last, count=500) or []
        rows = page[1:] if last != "+" else page  # max is inclusive: skip the entry already seen
        if not rows:
            break
        for _entry_id, fields in rows:
            scanned += 1
            decision = json.loads(fields[b"d"])
            if _fits(decision, task, rule, outcome):
                found.append(decision)
                if len(found) == limit:
                    break
        last = page[-1][0]
    return found


def _fits(decision: dict[str, Any], task: int | None, rule: str | None, outcome: str | None) -> bool:
    return ((task is None or decision["task_id"] == task) and (rule is None or decision["rule"] == rule)
            and (outcome is None or decision["outcome"] == outcome))
