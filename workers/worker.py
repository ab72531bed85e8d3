"""The RQ worker process: our settings for recovery, logging context per job, JSON jobs only."""

from __future__ import annotations

from typing import Any

import structlog
from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

import metrics
import queueing
import runtime
from runtime import Runtime

WORKER_TTL_SECONDS = 30
"""A dead worker's heartbeat expires after this; an idle worker blocks on the queue for ttl - 15 s
between maintenance checks. RQ's default (420 s) delays recovery by many minutes."""
MAINTENANCE_INTERVAL_SECONDS = 10
"""How often a worker cleans registries, which is when abandoned jobs of killed workers are found."""
JOB_MONITORING_INTERVAL_SECONDS = 5
JOB_HEARTBEAT_GRACE_SECONDS = 15
"""RQ lets a running job's heartbeat lapse for monitoring interval + 60 s before calling it abandoned;
with a 5 s heartbeat, 15 s of grace is plenty, and a killed job is rerun in well under 90 s."""


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


class TaskwardenWorker(JobContextMixin, Worker):
    """Our RQ worker: a forked work horse per job, quick recovery of jobs whose worker was killed."""

    def get_heartbeat_ttl(self, job: Any) -> int:
        return int(super().get_heartbeat_ttl(job)) - 60 + JOB_HEARTBEAT_GRACE_SECONDS


class TaskwardenSimpleWorker(JobContextMixin, SimpleWorker):
    """The same, running jobs in its own process (tests, and debugging a job step by step)."""


def build_worker(rt: Runtime, queue_names: tuple[str, ...] = queueing.QUEUES,
                 name: str | None = None) -> TaskwardenWorker:
    return TaskwardenWorker([rt.queue(q) for q in queue_names], name=name, connection=rt.redis,
                            serializer=JSONSerializer, worker_ttl=WORKER_TTL_SECONDS,
                            maintenance_interval=MAINTENANCE_INTERVAL_SECONDS,
                            job_monitoring_interval=JOB_MONITORING_INTERVAL_SECONDS,
                            log_job_description=False)


def run_worker(rt: Runtime, *, burst: bool = False, queue_names: tuple[str, ...] | None = None) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty). Installs ``rt`` as this process's
    runtime first: the jobs find it there."""
    runtime.install(rt)
    worker = build_worker(rt, queue_names or queueing.QUEUES)
    return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
