"""Jobs that failed for good, read from RQ's own FailedJobRegistry, and putting them back."""

from __future__ import annotations

from dataclasses import dataclass

from rq.job import Job
from rq.registry import FailedJobRegistry

import queueing
from logging_setup import redact_text
from runtime import Runtime


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    description: str
    reason: str
    ended_at: str


def failed_jobs(rt: Runtime, limit: int = 100) -> list[FailedJob]:
    """The latest failed jobs of our queues, each with the last line of its error as the reason."""
    found = []
    for name in queueing.QUEUES:
        registry = FailedJobRegistry(queue=rt.queue(name))
        for job in Job.fetch_many(registry.get_job_ids(0, limit - 1), connection=rt.redis,
                                  serializer=rt.queue(name).serializer):
            if job is not None:
                found.append(FailedJob(job.id, name, job.description or "", _reason(job),
                                       job.ended_at.isoformat(timespec="seconds") if job.ended_at else ""))
    return found


def requeue_failed(rt: Runtime, job_ids: list[str] | None = None) -> list[str]:
    """Put failed jobs back on their queue (all of them, or the ids given); returns what was requeued."""
    requeued = []
    for name in queueing.QUEUES:
        registry = FailedJobRegistry(queue=rt.queue(name))
        for job_id in registry.get_job_ids():
            if job_ids is None or job_id in job_ids:
                registry.requeue(job_id)
                requeued.append(job_id)
    return requeued


def _reason(job: Job) -> str:
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return redact_text(lines[-1]) if lines else "unknown"
