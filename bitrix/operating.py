"""The portal's per-method operating-time budget (reference 3.2), shared by every process.

Bitrix24 sums each method's execution time over a rolling 10 minutes and, past the limit, answers
OPERATION_TIME_LIMIT (429) until ``operating_reset_at``. Every answer reports the method's current
total (``time.operating``), so we record it in Redis and pause a method *before* the portal blocks it
(at ``NEAR_LIMIT`` of ``B24_OPERATING_LIMIT``) — only that method: others go on. ``batch`` itself is
exempt; its sub-calls count under their own methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import structlog
from redis import Redis

import keys
import metrics
from bitrix.errors import OperationTimeLimit
from config.portal import Portal

log = structlog.get_logger(__name__)

NEAR_LIMIT = 0.9
"""Pause a method once it has used this share of its operating limit."""
DEFAULT_PAUSE_SECONDS = 60
"""Pause when the portal blocked a method without saying until when."""


class OperatingBudget:
    def __init__(self, redis: Redis, portal: Portal) -> None:
        self._redis = redis
        self._portal = portal

    def check(self, methods: Iterable[str]) -> dict[str, OperationTimeLimit]:
        """The paused ones among ``methods``, each with the error to report instead of calling it."""
        names = sorted({method.lower() for method in methods})
        if not names:
            return {}
        ttls = self._redis.pipeline(transaction=False)
        for name in names:
            ttls.pttl(keys.paused(self._portal.id, name))
        paused = {}
        for name, ttl_ms in zip(names, ttls.execute(), strict=True):
            if ttl_ms and ttl_ms > 0:
                reset_at = time.time() + ttl_ms / 1000
                paused[name] = OperationTimeLimit(name, "OPERATION_TIME_LIMIT",
                                                  f"paused by us for {ttl_ms / 1000:.0f}s (operating time)",
                                                  reset_at=reset_at)
        return paused

    def observe(self, answers: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Record each (method, time block) the portal reported; pause methods near their limit."""
        pipe = self._redis.pipeline(transaction=False)
        for method, timing in answers:
            operating, reset_at = _number(timing.get("operating")), _number(timing.get("operating_reset_at"))
            if operating is None:
                continue
            pipe.hset(keys.operating(self._portal.id), method.lower(),
                      json.dumps({"operating": operating, "reset_at": reset_at, "seen": time.time()}))
            if operating >= NEAR_LIMIT * self._portal.operating_limit:
                self._pause(pipe, method, reset_at)
        pipe.execute()

    def blocked(self, method: str, reset_at: float | None) -> None:
        """The portal answered OPERATION_TIME_LIMIT: pause the method until its reset time."""
        if reset_at is None:
            raw = self._redis.hget(keys.operating(self._portal.id), method.lower())
            reset_at = _number(json.loads(raw).get("reset_at")) if raw else None
        pipe = self._redis.pipeline(transaction=False)
        self._pause(pipe, method, reset_at)
        pipe.execute()

    def _pause(self, pipe: Any, method: str, reset_at: float | None) -> None:
        until = reset_at if reset_at and reset_at > time.time() else time.time() + DEFAULT_PAUSE_SECONDS
        pipe.set(keys.paused(self._portal.id, method.lower()), 1, pxat=int(until * 1000))
        metrics.count(self._portal.id, "operating_pauses", method=method.lower())
        log.warning("bitrix.method_paused", method=method, until=round(until))


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
