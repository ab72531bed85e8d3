"""Coalescing in one round trip: the script's job is the job ``enqueue_evaluation`` makes, and one wins a race."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
import zlib
from typing import Any

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat

import audit
import keys
from handlers.coalesce import coalesce
from handlers.enqueue_script import OWN_FIELDS, TEMPLATE_TTL_SECONDS, new_job_id, rq_timestamp
from queueing import PENDING_TTL_SECONDS, RETRY_INTERVALS_SECONDS, enqueue_evaluation

from .helpers import run_worker

EVENT = "ONTASKUPDATE"


def runtime(app: Flask) -> Any:
    return app.extensions["taskwarden"]


def queued_job_ids(app: Flask) -> list[str]:
    rt = runtime(app)
    return [j.decode() for j in rt.redis.lrange(rt.queue().key, 0, -1)]


def fetch(app: Flask, job_id: str) -> Job:
    return Job.fetch(job_id, connection=runtime(app).redis, serializer=JSONSerializer)


def via_script(app: Flask, task_id: int, event_id: str, portal_id: str | None = None) -> str:
    """Coalesce one event; return the id of the job it queued."""
    rt = runtime(app)
    before = set(queued_job_ids(app))
    assert coalesce(rt.redis, rt.queue(), portal_id or rt.portal.id, task_id, event_name=EVENT,
                    event_id=event_id) == "queued"
    [job_id] = set(queued_job_ids(app)) - before
    return job_id


def via_rq(app: Flask, task_id: int, event_id: str, portal_id: str | None = None) -> str:
    rt = runtime(app)
    return enqueue_evaluation(rt.queue(), portal_id or rt.portal.id, task_id, cause="event", event_name=EVENT,
                              event_id=event_id).id


def within_jitter(intervals: list[int]) -> bool:
    return len(intervals) == len(RETRY_INTERVALS_SECONDS) and all(
        round(base * 0.8) <= got <= round(base * 1.2) for got, base in zip(intervals, RETRY_INTERVALS_SECONDS,
                                                                           strict=True))


class TestScriptJob:
    def test_hash_matches_enqueue_evaluation(self, app: Flask, redis: Redis) -> None:
        """Field for field, the job hash equals RQ's own enqueue of the same evaluation (times and jitter aside,
        JSON compared parsed)."""
        ours = redis.hgetall(f"rq:job:{via_script(app, 7, 'ev-7')}")
        theirs = redis.hgetall(f"rq:job:{via_rq(app, 7, 'ev-7')}")
        assert ours.keys() == theirs.keys()
        varying = {b"created_at", b"enqueued_at", b"retry_intervals", b"data", b"meta"}
        assert {k: v for k, v in ours.items() if k not in varying} == {
            k: v for k, v in theirs.items() if k not in varying}
        assert json.loads(ours[b"meta"]) == json.loads(theirs[b"meta"])  # same JSON, without RQ's spaces
        assert within_jitter(json.loads(ours[b"retry_intervals"]))
        data, rq_data = ours[b"data"], theirs[b"data"]  # RQ compresses its own; ours is plain JSON
        assert isinstance(rq_data, bytes)
        assert json.loads(data) == json.loads(zlib.decompress(rq_data))
        assert json.loads(data)[3]["task_id"] == 7

    def test_writes_what_rq_enqueue_writes(self, app: Flask, redis: Redis) -> None:
        """RQ's enqueue issues SADD rq:queues, HSETs on the job and RPUSH on the queue; the script does the same."""
        rt = runtime(app)
        pipe = redis.pipeline()
        job = enqueue_evaluation(rt.queue(), rt.portal.id, 7, event_name=EVENT, event_id="ev", pipeline=pipe)
        rq_writes = {(args[0], args[1]) for args, _ in pipe.command_stack}
        pipe.reset()  # never executed: only the list of writes is wanted
        queue_key = rt.queue().key
        waiting = keys.waiting(rt.portal.id)
        assert rq_writes == {("SADD", "rq:queues"), ("HSET", job.key), ("RPUSH", queue_key), ("HSET", waiting)}
        redis.delete(waiting)
        job_id = via_script(app, 7, "ev")
        assert redis.hgetall(waiting) == {b"7": job_id.encode()}
        assert redis.smembers("rq:queues") == {queue_key.encode()}
        assert redis.lrange(queue_key, 0, -1) == [job_id.encode()]
        assert redis.hget(f"rq:job:{job_id}", "status") == b"queued"
        assert redis.ttl(f"rq:job:{job_id}") == -1  # RQ sets no TTL on a queued job without ttl either

    def test_job_as_a_worker_reads_it(self, app: Flask, redis: Redis) -> None:
        """Restored by RQ, the job has enqueue_evaluation's function, kwargs, timeout, TTLs, retries and meta."""
        ours, theirs = fetch(app, via_script(app, 9, "ev-9")), fetch(app, via_rq(app, 9, "ev-9"))
        for attr in ("func_name", "args", "kwargs", "timeout", "result_ttl", "failure_ttl", "retries_left", "meta",
                     "description", "origin", "ttl", "enqueue_at_front_on_retry"):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
        assert ours.retries_left == len(RETRY_INTERVALS_SECONDS) and within_jitter(ours.retry_intervals or [])
        assert ours.get_status() == JobStatus.QUEUED
        assert ours.kwargs == {"portal_id": runtime(app).portal.id, "task_id": 9, "cause": "event",
                               "event_name": EVENT, "event_id": "ev-9"}

    def test_worker_runs_it(self, app: Flask, sandbox: Any) -> None:
        """A SimpleWorker runs the script's job: the entry is clamped and the audit names our event."""
        task_id = sandbox.add_task(TITLE="t")
        entry_id = sandbox.add_entry(task_id, 36000, "call")
        job_id = via_script(app, task_id, f"{EVENT}:{task_id}:1:27")
        run_worker(app)
        assert fetch(app, job_id).get_status() == JobStatus.FINISHED
        assert sandbox.entry(entry_id)["SECONDS"] == 28800
        rt = runtime(app)
        [decision] = audit.query(rt.redis, rt.portal.id, task=task_id)
        assert decision["event_id"] == f"{EVENT}:{task_id}:1:27"
        assert not rt.redis.exists(keys.pending(rt.portal.id, task_id))

    def test_failure_is_retried_like_enqueue_evaluation(self, app: Flask) -> None:
        """A failing job (a portal we do not serve) is retried on RQ's schedule exactly as RQ's own enqueue is."""
        ours, theirs = via_script(app, 11, "ev", portal_id="elsewhere"), via_rq(app, 12, "ev", portal_id="elsewhere")
        run_worker(app)  # zero-second intervals re-run at once; the first longer one leaves the job scheduled
        scheduled = ScheduledJobRegistry(runtime(app).queue().name, connection=runtime(app).redis)
        assert set(scheduled.get_job_ids()) == {ours, theirs}
        left = fetch(app, ours).retries_left
        assert left == fetch(app, theirs).retries_left and left is not None and left < len(RETRY_INTERVALS_SECONDS)


class TestJobFields:
    @given(st.integers(min_value=0, max_value=4_102_444_800_000_000))  # microseconds up to 2100
    def test_timestamps_as_rq_formats_them(self, micros: int) -> None:
        """``rq_timestamp`` equals RQ's ``utcformat`` of the same instant (it only caches the seconds)."""
        when = dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC).replace(microsecond=micros % 1_000_000)
        assert rq_timestamp(micros / 1_000_000) == utcformat(when)

    def test_job_ids_are_version_4_uuids(self) -> None:
        ids = {new_job_id() for _ in range(1000)}
        assert len(ids) == 1000 and all(uuid.UUID(job_id).version == 4 for job_id in ids)


class TestCoalesce:
    def test_exactly_one_of_concurrent_calls_queues(self, app: Flask) -> None:
        """16 threads released together on one task: one `queued`, fifteen `duplicate`, one job."""
        rt, barrier, answers = runtime(app), threading.Barrier(16), []

        def send(n: int) -> None:
            barrier.wait()
            answers.append(coalesce(rt.redis, rt.queue(), rt.portal.id, 5, event_name=EVENT, event_id=f"ev-{n}"))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == ["duplicate"] * 15 + ["queued"]
        [job_id] = queued_job_ids(app)
        assert fetch(app, job_id).kwargs["event_id"] == rt.redis.get(keys.pending(rt.portal.id, 5)).decode()

    def test_duplicate_writes_nothing(self, app: Flask, redis: Redis) -> None:
        """The second event for a waiting task leaves Redis exactly as the first one left it."""
        rt = runtime(app)
        via_script(app, 3, "first")
        before = {key: redis.dump(key) for key in redis.scan_iter()}
        assert coalesce(rt.redis, rt.queue(), rt.portal.id, 3, event_name=EVENT, event_id="second") == "duplicate"
        assert {key: redis.dump(key) for key in redis.scan_iter()} == before
        assert len(queued_job_ids(app)) == 1

    def test_pending_mark(self, app: Flask, redis: Redis) -> None:
        """The mark holds the queuing event's id and expires by itself should its job vanish."""
        rt = runtime(app)
        via_script(app, 4, "ev-4")
        mark = keys.pending(rt.portal.id, 4)
        assert redis.get(mark) == b"ev-4"
        assert 0 < redis.ttl(mark) <= PENDING_TTL_SECONDS

    def test_script_flushed_from_redis(self, app: Flask, redis: Redis) -> None:
        """After SCRIPT FLUSH (or a Redis restart) the script is loaded again and works."""
        redis.script_flush()
        assert via_script(app, 6, "ev-6")

    def test_template_written_again_when_missing(self, app: Flask, redis: Redis) -> None:
        """The shared fields live in an expiring template key; once it is gone, the next event writes it again."""
        via_script(app, 31, "ev-31")
        [template] = redis.keys("taskwarden:*:job-template:*")
        assert 0 < redis.ttl(template) <= TEMPLATE_TTL_SECONDS
        redis.delete(template)
        ours = redis.hgetall(f"rq:job:{via_script(app, 32, 'ev-32')}")
        assert redis.exists(template)
        theirs = redis.hgetall(f"rq:job:{via_rq(app, 32, 'ev-32')}")
        assert ours.keys() == theirs.keys() and ours[b"timeout"] == theirs[b"timeout"]

    def test_dropped_connection_is_reopened(self, app: Flask, redis: Redis) -> None:
        """A pooled connection killed by the server (a restart looks the same) is reopened; the event is queued."""
        via_script(app, 41, "ev-41")
        assert redis.client_kill_filter(_type="normal", skipme=True) >= 1
        assert via_script(app, 42, "ev-42")

    def test_own_fields_are_the_ones_that_vary(self, app: Flask, redis: Redis) -> None:
        """Only the fields built per event differ between two jobs; all others come from the template."""
        first, second = (redis.hgetall(f"rq:job:{via_script(app, n, f'ev-{n}')}") for n in (21, 22))
        differing = {k.decode() if isinstance(k, bytes) else k for k in first if first[k] != second[k]}
        assert differing <= OWN_FIELDS


class TestClaim:
    def test_claimed_jobs_leave_the_queue_and_the_rest_keep_their_order(self, make_app: Any) -> None:
        """A pass claims waiting tasks and takes their jobs off the queue (one pass over the list), so no
        worker forks for a job whose task is gone; the other jobs stay, in order, with their hashes."""
        from workers.passes import _claim

        app = make_app(taskwarden_pass_size=4)
        rt = runtime(app)
        jobs = {task_id: via_script(app, task_id, f"{EVENT}:{task_id}:0:1") for task_id in range(1, 9)}
        claimed = _claim(rt, rt.portal.id, keys.inflight(rt.portal.id, "job-of-a-pass"))
        assert len(claimed) == 3
        taken = {jobs[task_id] for task_id in claimed}
        assert queued_job_ids(app) == [job for job in jobs.values() if job not in taken]
        assert not any(rt.redis.exists(Job.key_for(job)) for job in taken)
        assert all(rt.redis.exists(Job.key_for(job)) for job in jobs.values() if job not in taken)
        assert {int(raw) for raw in rt.redis.smembers(keys.inflight(rt.portal.id, "job-of-a-pass"))} == set(claimed)
