"""A task's lock survives a Redis blip shorter than its TTL, and a holder that lost its lock anyway writes
nothing: its job fails before the write and is run again as a whole."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Worker

import keys
from logging_setup import capture_output, configure_logging
from queueing import enqueue_evaluation
from workers.evaluation import Trigger, evaluate_tasks
from workers.locks import KeptLock, LockLost, ensure_held, task_locks

from .helpers import poll
from .test_reliability_outage import Processes, processes  # noqa: F401  # the fixture, used below

TTL_SECONDS = 10
"""Long enough that stopping and starting a redis-server fits inside it with room to spare."""


@contextmanager
def kept_lock(redis: Redis, task_id: int, ttl_seconds: int) -> Iterator[None]:
    lock = KeptLock(redis, keys.task_lock("p", task_id), ttl_seconds)
    assert lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def locks_of_a_pass(redis: Redis, task_id: int, ttl_seconds: int) -> Iterator[None]:
    with task_locks(redis, "p", [task_id], ttl_seconds) as held:
        assert held == [task_id]
        yield


Holder = Callable[[Redis, int, int], AbstractContextManager[None]]


class TestBlip:
    @pytest.mark.slow
    @pytest.mark.parametrize("holder", [kept_lock, locks_of_a_pass], ids=["KeptLock", "task_locks"])
    def test_a_blip_shorter_than_the_ttl_keeps_the_lock(self, own_redis: Any, holder: Holder) -> None:
        """Redis stops (keeping its data) long enough for the keeper to fail a renewal, and comes back within
        the TTL: the keeper renews again, the lock is still ours and the holder may write.

        The client does not retry on its own, so that the keeper itself meets the blip."""
        configure_logging("json", "INFO")
        redis = Redis.from_url(own_redis.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
        lock_key = keys.task_lock("p", 7)
        with capture_output() as output, holder(redis, 7, TTL_SECONDS):
            redis.config_set("save", "3600 1")  # the server writes its data when stopped and reads it at start
            own_redis.stop()
            poll(lambda: "lock.renew_failed" in output.getvalue(), "a renewal to fail", timeout=TTL_SECONDS)
            own_redis.start()
            poll(lambda: "lock.kept" in output.getvalue(), "the keeper to renew again", timeout=TTL_SECONDS)
            assert "lock.lost" not in output.getvalue()
            assert redis.pttl(lock_key) > 0
            ensure_held(redis, "p", [7])  # the holder may still write
        assert not redis.exists(lock_key)


@pytest.fixture
def capped_task(sandbox: Any) -> tuple[int, int]:
    task_id = sandbox.add_task(TITLE="t")
    return task_id, sandbox.add_entry(task_id, 40000, "x")


def writes_sent(sandbox: Any) -> int:
    return sum(1 for r in sandbox.requests() for c in r.get("commands") or [{"method": r.get("method")}]
               if c["method"] == "task.elapseditem.update")


class TestLostLock:
    @pytest.mark.parametrize("loss", ["taken", "lapsed"])
    def test_the_holder_skips_its_writes(self, make_app: Callable[..., Flask], own_redis: Any, sandbox: Any,
                                         capped_task: tuple[int, int], loss: str) -> None:
        """The lock of the task was taken by another holder, or lapsed, while the evaluation ran: it raises
        before writing, and the entry is untouched."""
        rt = make_app(redis_url=own_redis.url).extensions["taskwarden"]
        task_id, entry_id = capped_task
        lock = KeptLock(rt.redis, keys.task_lock(rt.portal.id, task_id), 15)
        assert lock.acquire()
        try:
            if loss == "taken":
                rt.redis.set(keys.task_lock(rt.portal.id, task_id), "another holder's token")
            else:
                rt.redis.delete(keys.task_lock(rt.portal.id, task_id))
            with pytest.raises(LockLost) as lost:
                evaluate_tasks(rt, [task_id], Trigger("event", "ONTASKUPDATE"))
        finally:
            lock.release()
        assert lost.value.task_ids == [task_id]
        assert sandbox.entry(entry_id)["SECONDS"] == 40000
        assert writes_sent(sandbox) == 0

    def test_one_lost_lock_stops_the_whole_pass(self, make_app: Callable[..., Flask], own_redis: Any,
                                                sandbox: Any) -> None:
        """Of two tasks locked together, one lock is taken by another holder: neither task is written."""
        rt = make_app(redis_url=own_redis.url).extensions["taskwarden"]
        tasks = [sandbox.add_task(TITLE=f"t{n}") for n in range(2)]
        entries = [sandbox.add_entry(task_id, 40000, "x") for task_id in tasks]
        with task_locks(rt.redis, rt.portal.id, tasks, 15) as held:
            assert held == tasks
            rt.redis.set(keys.task_lock(rt.portal.id, tasks[1]), "another holder's token")
            with pytest.raises(LockLost) as lost:
                evaluate_tasks(rt, tasks, Trigger("event", "ONTASKUPDATE"))
        assert lost.value.task_ids == [tasks[1]]
        assert [sandbox.entry(entry_id)["SECONDS"] for entry_id in entries] == [40000, 40000]
        assert rt.redis.get(keys.task_lock(rt.portal.id, tasks[1])) == b"another holder's token"  # left alone

    def test_a_held_lock_lets_it_write(self, make_app: Callable[..., Flask], own_redis: Any, sandbox: Any,
                                       capped_task: tuple[int, int]) -> None:
        """The same evaluation with its lock intact writes, and so does one that took no lock while nobody
        holds the task; one that took none while another holds it does not."""
        rt = make_app(redis_url=own_redis.url).extensions["taskwarden"]
        task_id, entry_id = capped_task
        lock = KeptLock(rt.redis, keys.task_lock(rt.portal.id, task_id), 15)
        assert lock.acquire()
        try:
            decisions = evaluate_tasks(rt, [task_id], Trigger("event", "ONTASKUPDATE"))
        finally:
            lock.release()
        assert [d.outcome for d in decisions] == ["changed"]
        assert sandbox.entry(entry_id)["SECONDS"] == 28800
        other = sandbox.add_task(TITLE="u")
        other_entry = sandbox.add_entry(other, 40000, "x")
        rt.redis.set(keys.task_lock(rt.portal.id, other), "another holder's token")
        with pytest.raises(LockLost):
            evaluate_tasks(rt, [other], Trigger("event", "ONTASKUPDATE"))
        rt.redis.delete(keys.task_lock(rt.portal.id, other))
        assert [d.outcome for d in evaluate_tasks(rt, [other], Trigger("event", "ONTASKUPDATE"))] == ["changed"]
        assert sandbox.entry(other_entry)["SECONDS"] == 28800


@pytest.mark.slow
def test_a_job_that_lost_its_lock_is_run_again(make_app: Callable[..., Flask], own_redis: Any, sandbox: Any,
                                               sandbox_server: Any, capped_task: tuple[int, int],
                                               processes: Callable[[Flask, str, str], Processes]) -> None:  # noqa: F811
    """A real worker's evaluation loses its lock to another holder while its read is outstanding: it writes
    nothing, its job fails and is retried, and once the other holder lets go the retry writes, once."""
    app = make_app(redis_url=own_redis.url)
    rt = app.extensions["taskwarden"]
    redis = Redis.from_url(own_redis.url)
    task_id, entry_id = capped_task
    lock_key = keys.task_lock(rt.portal.id, task_id)
    group = processes(app, own_redis.url, sandbox_server.url)
    group.start("worker", "worker")
    poll(lambda: group.all_alive() and len(Worker.all(connection=redis)) == 1, "the worker", timeout=60,
         interval=0.2)
    sandbox.fault("batch", status=200, delay=5, times=1)  # the read is outstanding while the lock changes hands
    job = enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    retries = job.retries_left
    assert retries
    poll(lambda: redis.exists(lock_key), "the job to take the task's lock", timeout=30)
    redis.set(lock_key, "another holder's token")
    poll(lambda: job.refresh() or job.retries_left == retries - 1, "the job to fail and be retried", timeout=30,
         interval=0.1)
    assert writes_sent(sandbox) == 0 and sandbox.entry(entry_id)["SECONDS"] == 40000
    redis.delete(lock_key)  # the other holder is done
    poll(lambda: sandbox.entry(entry_id)["SECONDS"] == 28800, "the retry to cap the entry", timeout=60,
         interval=0.2)
    assert writes_sent(sandbox) == 1
    assert group.all_alive()


def test_a_rerun_takes_back_the_lock_its_killed_run_held(redis: Redis) -> None:
    """A job's pass lock carries the job's id: RQ's rerun of a killed job goes on at once instead of waiting out
    the TTL, while any other job still finds the lock taken."""
    key = keys.pass_lock("test-portal")
    killed = KeptLock(redis, key, 15, owner="job-1")
    assert killed.acquire()
    killed._keeper.stop()  # the process is gone: nothing renews or releases it
    assert not KeptLock(redis, key, 15, owner="job-2").acquire()
    rerun = KeptLock(redis, key, 15, owner="job-1")
    assert rerun.acquire()
    assert redis.ttl(key) > 10
    rerun.release()
    assert not redis.exists(key)
