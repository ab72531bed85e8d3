"""The pending mark and the RQ evaluation job written by one Lua script: one Redis round trip per event.

``Queue.enqueue`` costs intake two round trips (``SADD rq:queues``, then a MULTI with the job hash and
the queue push) on top of the pending ``SET NX``, and building an RQ ``Job`` per event showed in the
profile. Here the script writes exactly what RQ 2.12's ``Queue.enqueue_job`` -> ``_enqueue_async_job``
writes for a job without dependencies or ``ttl``: the queue key in ``rq:queues``, the job hash (with
``status: queued``) and the job id pushed on the queue's list, so RQ workers run it like any other;
and, as ``enqueue_evaluation`` does, the task listed in the portal's waiting hash with its job's id.

The hash fields shared by every evaluation job (timeouts, TTLs, retries left, origin, status...) come
from a job built once by RQ itself (``Queue.create_job`` with ``enqueue_evaluation``'s options); only
the fields that differ per job are serialised per event, the way ``Job.to_dict`` does it.
``tests/test_coalesce.py`` compares both with RQ's own output, so an RQ upgrade that changes them fails
there rather than in production.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.commands.core import Script
from rq import Queue, Retry
from rq.job import Job
from rq.utils import now, utcformat

from workers import jobs

COALESCE_ENQUEUE = """
-- KEYS[1] the task's pending mark     KEYS[2] rq:queues (RQ's set of queue keys)
-- KEYS[3] the job's hash               KEYS[4] the queue's list
-- KEYS[5] the portal's waiting hash (task id -> its queued job's id; shared passes claim from it)
-- ARGV[1] pending value (event id)     ARGV[2] pending TTL in seconds     ARGV[3] job id
-- ARGV[4] fields every evaluation job shares, as "name\\0value\\0name\\0value\\0..."
-- ARGV[5] the task id                  ARGV[6..] this job's own fields: name, value, name, value, ...
-- Returns 1 when the mark was set and the job queued, 0 when an evaluation already waits.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return 0
end
local shared = {}
for name, value in string.gmatch(ARGV[4], '([^%z]*)%z([^%z]*)%z') do
    shared[#shared + 1] = name
    shared[#shared + 1] = value
end
redis.call('SADD', KEYS[2], KEYS[4])
redis.call('HSET', KEYS[3], unpack(shared))
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[3])
return 1
"""

OWN_FIELDS = frozenset({"created_at", "enqueued_at", "data", "meta", "description", "retry_intervals"})
"""Hash fields that differ between two evaluation jobs; every other field is the same for all of them."""


@dataclass(frozen=True)
class JobTemplate:
    """What every evaluation job on one queue shares, taken from a job RQ built itself."""

    func_name: str
    serializer: Any
    shared_fields: bytes
    """``name\\0value\\0`` pairs: one script argument instead of two dozen (packing them showed too)."""


_templates: dict[tuple[Any, ...], JobTemplate] = {}
_script = Script(None, COALESCE_ENQUEUE.encode())  # type: ignore[arg-type]  # bytes need no client to hash


def evaluation_job(queue: Queue, portal_id: str, task_id: int, *, cause: str, event_name: str | None,
                   event_id: str | None) -> Job:
    """The job ``workers.jobs.enqueue_evaluation`` would queue, built by RQ in memory only."""
    kwargs, meta, description = jobs.evaluation_spec(portal_id, task_id, cause, event_name, event_id)
    job = queue.create_job(jobs.evaluate_task, kwargs=kwargs, timeout=jobs.EVALUATION_TIMEOUT_SECONDS,
                           result_ttl=jobs.RESULT_TTL_SECONDS, failure_ttl=jobs.FAILURE_TTL_SECONDS,
                           retry=Retry(max=len(jobs.RETRY_INTERVALS_SECONDS), interval=jobs._jittered()),
                           meta=meta, description=description)
    job.enqueued_at = now()  # set by _prepare_for_queue at enqueue time, like origin and status
    return job


def queue_unless_pending(redis: Redis, queue: Queue, portal_id: str, task_id: int, *, event_name: str,
                         event_id: str, pending_key: str, pending_ttl: int, waiting_key: str) -> bool:
    """Set the task's pending mark and, only if it was not set, queue its evaluation; one round trip.

    Returns:
        True when this call queued the evaluation, False when one already waits (nothing written).
    """
    template = job_template(queue)
    job_id = str(uuid4())
    keys = (pending_key, queue.redis_queues_keys, queue.job_class.key_for(job_id), queue.key, waiting_key)
    args = (event_id, pending_ttl, job_id, template.shared_fields, task_id,
            *own_fields(template, portal_id, task_id, "event", event_name, event_id))
    return bool(_script(keys=keys, args=args, client=redis))


def own_fields(template: JobTemplate, portal_id: str, task_id: int, cause: str, event_name: str | None,
               event_id: str | None) -> list[Any]:
    """The per-job hash fields, serialised as ``Job.to_dict`` serialises them."""
    kwargs, meta, description = jobs.evaluation_spec(portal_id, task_id, cause, event_name, event_id)
    stamp = utcformat(now())
    dumps = template.serializer.dumps
    return ["created_at", stamp, "data", _compress(dumps((template.func_name, None, (), kwargs))),
            "retry_intervals", json.dumps(jobs._jittered()), "description", description, "enqueued_at", stamp,
            "meta", dumps(meta)]


def job_template(queue: Queue) -> JobTemplate:
    """The shared fields of this queue's evaluation jobs, from a reference job (built once per process).

    Keyed by everything the shared fields depend on, so a changed setting never meets a stale template.
    """
    cache_key = (queue.name, queue.serializer, jobs.evaluate_task, jobs.EVALUATION_TIMEOUT_SECONDS,
                 jobs.RESULT_TTL_SECONDS, jobs.FAILURE_TTL_SECONDS, len(jobs.RETRY_INTERVALS_SECONDS))
    template = _templates.get(cache_key)
    if template is None:
        reference = evaluation_job(queue, "-", 1, cause="event", event_name=None, event_id=None)
        shared = b"".join(_encode(name) + b"\0" + _encode(value) + b"\0"
                          for name, value in reference.to_dict().items()
                          if name not in OWN_FIELDS and value is not None)
        template = _templates[cache_key] = JobTemplate(str(reference.func_name), queue.serializer, shared)
    return template


def _compress(data: bytes) -> bytes:
    """A zlib stream as ``Job.restore`` reads it, with a 512-byte window: the default 32 KiB window makes
    zlib allocate ~256 KiB per call, which cost several times more than compressing ~200 bytes."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 9, 1)
    return compressor.compress(data) + compressor.flush()


def _encode(value: Any) -> bytes:
    """One shared field as redis-py would send it; a NUL would break the script's split, so refuse it."""
    if isinstance(value, bytes):
        encoded = value
    elif isinstance(value, str):  # JobStatus is a str enum: its value, as redis-py sends it
        encoded = value.encode()
    else:
        encoded = str(value).encode()
    if b"\0" in encoded:
        raise ValueError("a shared RQ job field contains NUL")
    return encoded
