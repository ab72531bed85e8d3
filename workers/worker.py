"""The RQ worker process: our settings for recovery, logging context per job, JSON jobs only, secrets kept out
of failure records, and a Redis connection that waits out an outage instead of ending the process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import structlog
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, SimpleWorker, Worker, worker_registration
from rq.serializers import JSONSerializer

import metrics
import queueing
import redis_connect
import runtime
from config.settings import Settings
from logging_setup import redact_text
from runtime import Runtime

log = structlog.get_logger(__name__)
T = TypeVar("T")

WORKER_TTL_SECONDS = 30
"""A dead worker's heartbeat expires after this; an idle worker blocks on the queue for ttl - 15 s
between maintenance checks. RQ's default (420 s) delays recovery by many minutes."""
MAINTENANCE_INTERVAL_SECONDS = 10
"""How often a worker cleans registries, which is when abandoned jobs of killed workers are found."""
JOB_MONITORING_INTERVAL_SECONDS = 5
JOB_HEARTBEAT_GRACE_SECONDS = 15
"""RQ lets a running job's heartbeat lapse for monitoring interval + 60 s before calling it abandoned;
with a 5 s heartbeat, 15 s of grace is plenty, and a killed job is rerun in well under 90 s."""
REDIS_WAIT_CAP_SECONDS = 5.0
"""Longest pause between two attempts to reach Redis while it is away."""
REDIS_WAIT_LOG_EVERY = 12
"""While one call keeps waiting for Redis, it logs again every this many attempts (about a minute)."""
SCHEDULER_STOP_SECONDS = 5
"""How long RQ's scheduler process gets to stop on SIGTERM before it is killed."""

_stopping = threading.Event()


class PatientRetry(Retry):
    """redis-py's ``Retry`` without a limit: a call waits for Redis however long it is away, then goes on.

    RQ's worker survives a Redis error only while it waits for a job; one met anywhere else (watching a
    running job, cleaning registries, registering at start) ends the process, so an outage longer than
    redis-py's few default retries left no worker running. Waiting inside every call of RQ's machinery keeps
    the process and its state as they were. A call logs ``redis.unreachable`` when it starts waiting (and
    about every minute after) and ``redis.reachable`` once it got through. A process being stopped
    (``stop_waiting_for_redis``) fails its calls instead, so that it can exit during an outage.
    """

    def __init__(self) -> None:
        super().__init__(ExponentialWithJitterBackoff(cap=REDIS_WAIT_CAP_SECONDS, base=0.05), retries=-1)

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        failures = 0

        def attempt() -> T:
            result = do()
            if failures:
                log.info("redis.reachable", attempts=failures + 1)
            return result

        def failed(error: Exception, *count: int) -> None:
            nonlocal failures
            failures += 1
            fail(error, *count)
            if _stopping.is_set():
                raise error
            if failures == 1 or failures % REDIS_WAIT_LOG_EVERY == 0:
                log.warning("redis.unreachable", error=str(error), attempts=failures)

        return super().call_with_retry(attempt, failed, is_retryable, with_failure_count)


def stop_waiting_for_redis() -> None:
    """From now on this process's patient calls fail as soon as Redis fails them: it is being stopped."""
    _stopping.set()


def patient_redis(settings: Settings) -> Redis:
    """A client for RQ's machinery in a long-running process (see ``PatientRetry``), of the configured Redis:
    a single server, or the master Sentinel names (followed through a failover)."""
    return redis_connect.connect(settings, retry=PatientRetry())


class JobContextMixin:
    """Binds each job's log context (job id, task, event) and flushes its metrics when it ends."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(job_id=job.id, queue=queue.name, **job.meta.get("log_ctx", {}))
        try:
            ok = super().perform_job(job, queue, *args, **kwargs)  # type: ignore[misc]
            if not ok:
                metrics.count(job.meta.get("log_ctx", {}).get("portal", "-"), "evaluations", outcome="failed")
            return ok
        finally:
            metrics.flush(self.connection)  # type: ignore[attr-defined]  # the horse exits after this job
            structlog.contextvars.clear_contextvars()


class RedactedFailuresMixin:
    """Masks secrets in the error text RQ stores for a failed job.

    RQ keeps that text (the traceback) in the job's result for the failure TTL, 7 days, and the dashboard
    shows it: an error that echoes the webhook URL or the application token would sit there in clear.
    Every failure with an error text passes through ``handle_job_failure`` (an abandoned job gets a fixed one).
    """

    def handle_job_failure(self, job: Any, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "") -> None:
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,  # type: ignore[misc]
                                   exc_string=redact_text(exc_string))


class TaskwardenWorker(RedactedFailuresMixin, JobContextMixin, Worker):
    """Our RQ worker: a forked work horse per job, quick recovery of jobs whose worker was killed, and
    alive through Redis outages (its connection waits, see ``PatientRetry``)."""

    def get_heartbeat_ttl(self, job: Any) -> int:
        return int(super().get_heartbeat_ttl(job)) - 60 + JOB_HEARTBEAT_GRACE_SECONDS

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; and when Redis came back without its data, the worker lists itself again, so that
        ``status``, health checks and RQ's registry cleaning see it."""
        super().heartbeat(timeout, pipeline)
        if pipeline is None and not self.is_horse:
            _list_again_if_forgotten(self)

    def request_stop(self, signum: int, frame: Any) -> None:
        """A stop request also ends the waiting for Redis: stopped during an outage, the worker exits."""
        stop_waiting_for_redis()
        super().request_stop(signum, frame)

    def stop_scheduler(self) -> None:
        """RQ's own, with a limit: RQ's scheduler process, waiting for Redis, would not exit on SIGTERM."""
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or process.pid is None:
            return
        with suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
        process.join(SCHEDULER_STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()

    def teardown(self) -> None:
        """RQ's own, which records the worker's end in Redis; without Redis the worker exits all the same
        (its key expires)."""
        try:
            super().teardown()
        except RedisError as error:
            log.warning("worker.stopped_without_redis", error=str(error))


class TaskwardenSimpleWorker(RedactedFailuresMixin, JobContextMixin, SimpleWorker):
    """The same, running jobs in its own process (tests, and debugging a job step by step)."""


def _list_again_if_forgotten(worker: Worker) -> None:
    with worker.connection.pipeline(transaction=False) as pipe:
        pipe.sismember(worker.redis_workers_keys, worker.key)
        pipe.hexists(worker.key, "birth")
        listed, described = pipe.execute()
    if listed and described:
        return
    with worker.connection.pipeline() as pipe:
        pipe.hset(worker.key, mapping={**worker.serialize(), "state": worker.get_state()})
        worker_registration.register(worker, pipe)
        pipe.expire(worker.key, worker.worker_ttl + 60)
        pipe.execute()
    log.warning("worker.listed_again", worker=worker.name)


def build_worker(rt: Runtime, queue_names: tuple[str, ...] = queueing.QUEUES,
                 name: str | None = None) -> TaskwardenWorker:
    """The worker and its queues on a patient connection of their own; jobs keep using ``rt.redis``, whose
    calls fail after redis-py's few retries, so that a job meets an outage as an error and is retried."""
    connection = patient_redis(rt.settings)
    queues = [Queue(queue_name, connection=connection, serializer=JSONSerializer) for queue_name in queue_names]
    return TaskwardenWorker(queues, name=name, connection=connection, serializer=JSONSerializer,
                            worker_ttl=WORKER_TTL_SECONDS, maintenance_interval=MAINTENANCE_INTERVAL_SECONDS,
                            job_monitoring_interval=JOB_MONITORING_INTERVAL_SECONDS, log_job_description=False)


def run_worker(rt: Runtime, *, burst: bool = False, queue_names: tuple[str, ...] | None = None) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty). Installs ``rt`` as this process's
    runtime first: the jobs find it there."""
    runtime.install(rt)
    worker = build_worker(rt, queue_names or queueing.QUEUES)
    return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
