"""When to retry a failed call and how long to wait: one rule per line, jitter testable on its own."""

from __future__ import annotations

import random

from bitrix.errors import BitrixError, OperationTimeLimit, QueryLimitExceeded

MAX_ATTEMPTS = 5
"""Attempts per call for 5xx and network errors before the job as a whole fails (and RQ retries it)."""
MAX_LIMIT_WAITS = 30
"""QUERY_LIMIT_EXCEEDED answers waited out per call; each wait is a drain interval or more."""
BASE_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 20.0


def should_retry(error: BitrixError, attempt: int) -> bool:
    """True when the call that failed with ``error`` on its ``attempt``-th try should be sent again."""
    if isinstance(error, QueryLimitExceeded):
        return attempt < MAX_LIMIT_WAITS  # the budget drains; waiting always helps eventually
    if isinstance(error, OperationTimeLimit):
        return False  # blocked for minutes: the job comes back at operating_reset_at instead
    if error.retryable:
        return attempt < MAX_ATTEMPTS  # 5xx, network: transient until proven otherwise
    return False  # access, validation, not found, auth: the same call fails the same way


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with jitter: uniform in [c/2, c], c = min(cap, base * 2**(attempt-1))."""
    ceiling = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)
