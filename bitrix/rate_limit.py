"""The portal's request budget, shared by every process on every machine through Redis.

Bitrix24 counts HTTP requests in a leaky bucket per portal (2/s with a burst of 50 on most plans);
over it, it answers QUERY_LIMIT_EXCEEDED. We meter ourselves with the same shape (GCRA), taking one
token before each HTTP request, so the portal's own limit is rarely hit at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

import keys
from config.portal import Portal
from redis_scripts import script

# KEYS[1] budget key (theoretical arrival time, ms); ARGV[1] ms per request, ARGV[2] burst.
# Returns 0 when the request may go now, else the milliseconds to wait. Redis' clock, not the host's.
_GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local wait = (tat - (burst - 1) * interval) - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
return 0
"""


# The same arithmetic without taking anything: how long a request would wait now.
_PEEK = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
return math.max(0, math.ceil((tat - (burst - 1) * interval) - now))
"""


BURST_HEADROOM = 2
"""Requests of the portal's burst we leave unused: our meter decides when a request leaves, the portal's
bucket when it arrives, and two requests sent 0.5 s apart can arrive closer together than that."""


class RequestBudget:
    """Blocks until the shared bucket has room for one more request."""

    def __init__(self, redis: Redis, portal: Portal, sleep: Callable[[float], None] = time.sleep) -> None:
        self._redis = redis
        self._script = script(redis, _GCRA)
        self._key = keys.budget(portal.id)
        self._interval_ms = 1000.0 / portal.rate
        self._burst = max(1, portal.burst - BURST_HEADROOM)
        self._sleep = sleep

    def acquire(self) -> float:
        """Take one request's worth of budget, waiting as long as needed; returns seconds waited."""
        waited = 0.0
        while True:
            wait_ms = int(self._script(keys=[self._key], args=[self._interval_ms, self._burst]))
            if wait_ms <= 0:
                return waited
            self._sleep(wait_ms / 1000)
            waited += wait_ms / 1000

    def wait_seconds(self) -> float:
        """How long a request would wait for the budget right now (nothing is taken)."""
        return int(script(self._redis, _PEEK)(keys=[self._key], args=[self._interval_ms, self._burst])) / 1000

    def penalise(self) -> None:
        """Mark the bucket full after the portal said QUERY_LIMIT_EXCEEDED: our meter was too generous
        (another client shares the portal), so every process waits for the next drain instead of retrying.
        """
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        full_ms = self._interval_ms * self._burst
        self._redis.set(self._key, int(now_ms + full_ms), px=int(full_ms) + 1000)
