"""The shared request budget (GCRA in Redis): a burst, then one request per drain interval, for all."""

from __future__ import annotations

import threading
import time

from redis import Redis

from bitrix.rate_limit import BURST_HEADROOM, RequestBudget
from config.portal import Portal

from .conftest import TEST_REDIS_URL


def portal(rate: float, burst: int) -> Portal:
    return Portal(id="budget-test", rest_base="http://127.0.0.1:1/rest/", user_id=1, secret="s", application_token="t",
                  rate=rate, burst=burst)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(seconds)


class TestRequestBudget:
    def test_burst_then_waits(self, redis: Redis) -> None:
        """The burst (less a little headroom) goes at once; the next requests wait about one interval each."""
        sleep = RecordingSleep()
        budget = RequestBudget(redis, portal(rate=50, burst=5 + BURST_HEADROOM), sleep=sleep)
        waited = [budget.acquire() for _ in range(8)]
        assert waited[:5] == [0.0] * 5
        assert all(0 < w <= 0.05 for w in waited[5:])
        assert len(sleep.calls) >= 3

    def test_shared_between_clients(self, redis: Redis) -> None:
        """Two clients (separate connections, as in two processes) share one burst."""
        immediate: list[float] = []
        lock = threading.Lock()

        def take() -> None:
            budget = RequestBudget(Redis.from_url(TEST_REDIS_URL), portal(rate=50, burst=6 + BURST_HEADROOM),
                                   sleep=time.sleep)
            for _ in range(6):
                waited = budget.acquire()
                with lock:
                    immediate.append(waited)

        threads = [threading.Thread(target=take) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert len(immediate) == 12
        assert sum(1 for w in immediate if w == 0.0) == 6

    def test_penalise_makes_everyone_wait(self, redis: Redis) -> None:
        """After the portal said QUERY_LIMIT_EXCEEDED, the next request waits even with budget left."""
        sleep = RecordingSleep()
        budget = RequestBudget(redis, portal(rate=50, burst=5), sleep=sleep)
        assert budget.acquire() == 0.0
        budget.penalise()
        assert budget.acquire() > 0
