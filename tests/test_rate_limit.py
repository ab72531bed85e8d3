"""The shared request budget (GCRA in Redis): a burst, then one request per drain interval, for all.

Nothing here depends on how fast the test runs: the drain interval is 100 s, so the bucket does not
refill while a test runs, and a wait the budget asks for is never slept. It is either refused on the
spot (``refuse``) or let pass on the bucket's own clock (``BucketClock``). Wait bounds are stated
against Redis' clock, the one the budget itself reads.
"""

from __future__ import annotations

import threading

from redis import Redis

import keys
from bitrix.rate_limit import BURST_HEADROOM, RequestBudget
from config.portal import Portal

from .helpers import TEST_REDIS_URL

PORTAL_ID = "budget-test"
RATE = 0.01
"""Requests per second: one drain interval is 100 s, far longer than any of these tests."""
INTERVAL_S = 1 / RATE


def portal(burst: int) -> Portal:
    return Portal(id=PORTAL_ID, rest_base="http://127.0.0.1:1/rest/", user_id=1, secret="s", application_token="t",
                  rate=RATE, burst=burst)


def server_ms(redis: Redis) -> int:
    """Redis' clock in milliseconds, the clock the budget's script reads."""
    seconds, micros = redis.time()
    return seconds * 1000 + micros // 1000


class MustWait(Exception):
    """Raised by ``refuse`` instead of sleeping: the budget refused a request for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def refuse(seconds: float) -> None:
    """A ``sleep`` that does not wait: the request the budget wanted to hold is refused instead."""
    raise MustWait(seconds)


class BucketClock:
    """A ``sleep`` that lets the time pass for the bucket instead of for the test.

    GCRA only compares the bucket's theoretical arrival time with Redis' clock, so moving that time back
    by d is exactly what d more seconds of Redis' clock would do. Every call is recorded.
    """

    def __init__(self, redis: Redis, portal_id: str) -> None:
        self.calls: list[float] = []
        self._redis = redis
        self._key = keys.budget(portal_id)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        assert self._redis.exists(self._key), "the budget keeps no state under keys.budget"
        self._redis.incrbyfloat(self._key, -seconds * 1000)  # atomic, and keeps the key's TTL


class TestRequestBudget:
    def test_burst_then_waits(self, redis: Redis) -> None:
        """The burst (less a little headroom) goes at once; the next requests wait about one interval each."""
        clock = BucketClock(redis, PORTAL_ID)
        budget = RequestBudget(redis, portal(burst=5 + BURST_HEADROOM), sleep=clock)
        before = server_ms(redis)
        burst = [budget.acquire() for _ in range(5)]
        assert burst == [0.0] * 5
        assert clock.calls == []  # the burst never asked to wait
        waited = [budget.acquire() for _ in range(3)]
        spent_s = (server_ms(redis) - before) / 1000
        assert waited == clock.calls  # each request after the burst waited exactly once
        for seconds in waited:  # one interval, less what Redis' clock saw pass meanwhile
            assert 0 < seconds <= INTERVAL_S
            assert seconds >= INTERVAL_S - spent_s

    def test_shared_between_clients(self, redis: Redis) -> None:
        """Two clients (separate connections, as in two processes) share one burst: of their 12 requests,
        the burst's 6 go at once and the others are told to wait (no refill in the 100 s interval)."""
        answers: list[float | MustWait] = []
        lock = threading.Lock()
        start = threading.Barrier(2)

        def take() -> None:
            connection = Redis.from_url(TEST_REDIS_URL)
            budget = RequestBudget(connection, portal(burst=6 + BURST_HEADROOM), sleep=refuse)
            start.wait(timeout=10)
            for _ in range(6):
                try:
                    answer: float | MustWait = budget.acquire()
                except MustWait as refused:
                    answer = refused
                with lock:
                    answers.append(answer)
            connection.close()

        before = server_ms(redis)
        threads = [threading.Thread(target=take) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        spent_ms = server_ms(redis) - before
        assert not any(thread.is_alive() for thread in threads)
        granted = [answer for answer in answers if not isinstance(answer, MustWait)]
        refused = [answer for answer in answers if isinstance(answer, MustWait)]
        assert len(answers) == 12
        assert granted == [0.0] * len(granted)
        # The burst, plus one request per interval Redis' clock saw pass: 6 + 0 unless the run took 100 s.
        assert 6 <= len(granted) <= 6 + spent_ms // (INTERVAL_S * 1000)
        assert all(0 < answer.seconds <= INTERVAL_S for answer in refused)

    def test_penalise_makes_everyone_wait(self, redis: Redis) -> None:
        """After the portal said QUERY_LIMIT_EXCEEDED, the next request waits even with budget left."""
        budget = RequestBudget(redis, portal(burst=5), sleep=refuse)  # 3 usable after the headroom
        other_connection = Redis.from_url(TEST_REDIS_URL)
        other = RequestBudget(other_connection, portal(burst=5), sleep=refuse)  # another process
        try:
            assert budget.acquire() == 0.0  # two of three left
            before = server_ms(redis)
            budget.penalise()
            waits = []
            for client in (budget, other):
                try:
                    client.acquire()
                except MustWait as refused:
                    waits.append(refused.seconds)
            spent_s = (server_ms(redis) - before) / 1000
        finally:
            other_connection.close()
        assert len(waits) == 2  # both refused, neither request went
        for seconds in waits:  # a full drain interval, less what Redis' clock saw pass since the penalty
            assert INTERVAL_S - spent_s <= seconds <= INTERVAL_S
