"""The RQ worker process: our settings for recovery, logging context per job, JSON jobs only."""

from __future__ import annotations

from typing import Any

import structlog
from rq import Worker
from rq.serializers import JSONSerializer

import keys
from runtime import Runtime

WORKER_TTL_SECONDS = 60
"""A dead worker's heartbeat expires after this; RQ's default (420 s) delays recovery for minutes."""
MAINTENANCE_INTERVAL_SECONDS = 30
"""How often a worker cleans registries, which is when abandoned jobs of killed workers are found."""
JOB_MONITORING_INTERVAL_SECONDS = 10


class TaskwardenWorker(Worker):
    """An RQ worker that binds each job's log context (job id, task, event) before running it."""

    def perform_job(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> bool:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(job_id=job.id, queue=queue.name, **job.meta.get("log_ctx", {}))
        try:
            return super().perform_job(job, queue, *args, **kwargs)
        finally:
            structlog.contextvars.clear_contextvars()


def build_worker(rt: Runtime, queue_names: tuple[str, ...] = (keys.EVALUATION_QUEUE, keys.SWEEP_QUEUE),
                 name: str | None = None) -> TaskwardenWorker:
    return TaskwardenWorker([rt.queue(q) for q in queue_names], name=name, connection=rt.redis,
                            serializer=JSONSerializer, worker_ttl=WORKER_TTL_SECONDS,
                            maintenance_interval=MAINTENANCE_INTERVAL_SECONDS,
                            job_monitoring_interval=JOB_MONITORING_INTERVAL_SECONDS,
                            log_job_description=False)


def run_worker(rt: Runtime, *, burst: bool = False, queue_names: tuple[str, ...] | None = None) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty)."""
    worker = build_worker(rt, queue_names or (keys.EVALUATION_QUEUE, keys.SWEEP_QUEUE))
    return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
