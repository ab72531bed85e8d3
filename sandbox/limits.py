"""The portal's two limits: the request-rate bucket (§3.1) and per-method operating time (§3.2).

Both take `now` as an argument so they are plain, testable state; the caller holds the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_SECONDS = 600.0
"""Operating time is summed over a rolling 10 minutes (10 buckets of 60 s)."""

BUCKET_SECONDS = 60.0


@dataclass
class LeakyBucket:
    """Each request adds 1, the level drains `rate` per second; a full bucket rejects (§3.1)."""

    rate: float
    burst: int
    level: float = 0.0
    updated: float = 0.0

    def admit(self, now: float) -> bool:
        """Count one request; False (and nothing counted) when the bucket is full."""
        if self.burst <= 0:
            return True
        self.level = max(0.0, self.level - (now - self.updated) * self.rate)
        self.updated = now
        if self.level + 1 > self.burst:
            return False
        self.level += 1
        return True


@dataclass
class _Minute:
    first: float
    seconds: float


@dataclass
class OperatingClock:
    """Summed simulated execution time per method over the rolling window (LoadLimiter)."""

    buckets: dict[str, dict[int, _Minute]] = field(default_factory=dict)

    def _live(self, method: str, now: float) -> dict[int, _Minute]:
        minutes = self.buckets.setdefault(method, {})
        for key in [key for key, minute in minutes.items() if now >= minute.first + WINDOW_SECONDS]:
            del minutes[key]
        return minutes

    def used(self, method: str, now: float) -> float:
        """Seconds `method` has used in the window."""
        return sum(minute.seconds for minute in self._live(method, now).values())

    def is_blocked(self, method: str, now: float, limit: float) -> bool:
        """Checked before a call: already over the limit means blocked; crossing it is allowed."""
        return self.used(method, now) > limit

    def record(self, method: str, now: float, seconds: float) -> None:
        """Add one call's cost to the current minute bucket."""
        minutes = self._live(method, now)
        key = int(now // BUCKET_SECONDS)
        minute = minutes.setdefault(key, _Minute(first=now, seconds=0.0))
        minute.seconds += seconds

    def reset_at(self, method: str, now: float) -> int:
        """Unix time when the oldest non-empty bucket drops out (`time.operating_reset_at`)."""
        minutes = self._live(method, now)
        if not minutes:
            return int(now + WINDOW_SECONDS)
        return int(min(minute.first for minute in minutes.values()) + WINDOW_SECONDS)
