"""The concurrency guard counts two live evaluations of a task at once, and not a killed one's rerun."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from redis import Redis

import keys
from queueing import enqueue_evaluation
from workers.locks import concurrency_guard

from .helpers import poll
from .test_reliability_outage import Processes, processes  # noqa: F401  # the fixture, used below


def redis_now_ms(redis: Redis) -> int:
    seconds, micros = redis.time()
    return seconds * 1000 + micros // 1000


class TestLiveHolders:
    def test_two_live_holders_are_a_violation_however_long_they_run(self, redis: Redis) -> None:
        """A holder still running after its mark's first TTL (renewed by its keeper) is counted by a second."""
        entered, leave = threading.Event(), threading.Event()

        def first_holder() -> None:
            with concurrency_guard(redis, "p", [7], ttl_seconds=1):
                entered.set()
                leave.wait(30)

        holder = threading.Thread(target=first_holder)
        holder.start()
        try:
            assert entered.wait(10)
            marks: Any = redis.zrange(keys.running("p", 7), 0, -1, withscores=True)
            first_expiry = float(marks[0][1])
            poll(lambda: redis_now_ms(redis) > first_expiry + 500, "the first mark's TTL to pass", timeout=10)
            with concurrency_guard(redis, "p", [7], ttl_seconds=1):
                pass
        finally:
            leave.set()
            holder.join(timeout=10)
        assert redis.hgetall(keys.lock_violations("p")) == {b"7": b"1"}
        assert not redis.exists(keys.running("p", 7))  # both marks removed when their evaluations ended

    def test_one_after_the_other_is_no_violation(self, redis: Redis) -> None:
        """Evaluations in turn leave no mark behind and count nothing."""
        for _ in range(3):
            with concurrency_guard(redis, "p", [7, 8]):
                assert redis.zcard(keys.running("p", 7)) == 1
        assert redis.hgetall(keys.lock_violations("p")) == {}
        assert not redis.exists(keys.running("p", 7)) and not redis.exists(keys.running("p", 8))

    def test_an_older_counter_is_replaced(self, redis: Redis) -> None:
        """A running counter left by an earlier version (a number) neither fails the guard nor counts."""
        redis.set(keys.running("p", 7), 1, ex=600)
        with concurrency_guard(redis, "p", [7]):
            assert redis.type(keys.running("p", 7)) == b"zset"
        assert redis.hgetall(keys.lock_violations("p")) == {}


@pytest.mark.slow
def test_a_killed_holder_does_not_make_its_rerun_a_violation(
        make_app: Callable[..., Flask], own_redis: Any, sandbox: Any, sandbox_server: Any,
        processes: Callable[[Flask, str, str], Processes]) -> None:  # noqa: F811
    """A real worker is killed (SIGKILL, with its horse and scheduler) while its evaluation reads; another
    worker reruns the job to completion, and no lock violation is recorded."""
    app = make_app(redis_url=own_redis.url)
    rt = app.extensions["taskwarden"]
    redis = Redis.from_url(own_redis.url)
    task_id = sandbox.add_task(TITLE="t")
    entry_id = sandbox.add_entry(task_id, 40000, "x")
    sandbox.fault("batch", status=200, delay=60, times=1)  # the first evaluation hangs in its read
    job = enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    group = processes(app, own_redis.url, sandbox_server.url)
    group.start("first", "worker")
    poll(lambda: group.all_alive() and redis.exists(keys.running(rt.portal.id, task_id)),
         "the evaluation to mark itself running", timeout=30)
    group.kill("first")
    sandbox.clear_faults()
    group.start("second", "worker")
    poll(lambda: group.all_alive() and job.get_status(refresh=True) == "finished", "the rerun to finish the job",
         timeout=90, interval=0.5)
    assert (job.return_value() or {}).get("status") == "done"
    assert sandbox.entry(entry_id)["SECONDS"] == 28800
    assert redis.hgetall(keys.lock_violations(rt.portal.id)) == {}
