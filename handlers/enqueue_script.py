"""The pending mark and the RQ evaluation job written by one Lua script: one Redis round trip per event.

``Queue.enqueue`` costs intake two round trips (``SADD rq:queues``, then a MULTI with the job hash and
the queue push) on top of the pending ``SET NX``, and building an RQ ``Job`` per event showed in the
profile. Here the script writes exactly what RQ 2.12's ``Queue.enqueue_job`` -> ``_enqueue_async_job``
writes for a job without dependencies or ``ttl``: the queue key in ``rq:queues``, the job hash (with
``status: queued``) and the job id pushed on the queue's list, so RQ workers run it like any other;
and, as ``queueing.enqueue_evaluation`` does, the task listed in the portal's waiting hash with its job's id.

The hash fields shared by every evaluation job (timeouts, TTLs, retries left, origin, status...) come
from a job built once by RQ itself (``Queue.create_job`` with ``enqueue_evaluation``'s options); only
the fields that differ per job are serialised per event, the way ``Job.to_dict`` does it. The shared
fields sit in Redis as a template hash that the script ``COPY``s into each new job: splitting two dozen
fields out of one argument in Lua cost Redis far more per event than the copy.
``tests/test_coalesce.py`` compares both with RQ's own output, so an RQ upgrade that changes them fails
there rather than in production.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now

import keys
import queueing
from handlers.script_call import run_script
from redis_scripts import script

TEMPLATE_TTL_SECONDS = 24 * 3600

COALESCE_ENQUEUE = """
-- KEYS[1] the task's pending mark     KEYS[2] rq:queues (RQ's set of queue keys)
-- KEYS[3] the job's hash               KEYS[4] the queue's list
-- KEYS[5] the portal's waiting hash (task id -> its queued job's id; shared passes claim from it)
-- KEYS[6] the job template: the hash fields every evaluation job shares
-- ARGV[1] pending value (event id)     ARGV[2] pending TTL in seconds     ARGV[3] job id
-- ARGV[4] the task id                  ARGV[5] most tasks waiting at once (0: no limit)
-- ARGV[6..] this job's own fields: name, value, name, value, ...
-- Returns 1 when the mark was set and the job queued, 0 when an evaluation already waits,
-- -1 (nothing written) when the template is missing: the caller writes it and calls again,
-- -2 (nothing written) when the portal already has as many tasks waiting as it may.
if redis.call('EXISTS', KEYS[6]) == 0 then
    return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
if tonumber(ARGV[5]) > 0 and redis.call('HLEN', KEYS[5]) >= tonumber(ARGV[5]) then
    return -2
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('COPY', KEYS[6], KEYS[3])
redis.call('PERSIST', KEYS[3])  -- COPY copies the template's expiry too; a queued RQ job has none
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('SADD', KEYS[2], KEYS[4])
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[4], ARGV[3])
return 1
"""

OWN_FIELDS = frozenset({"created_at", "enqueued_at", "data", "meta", "description", "retry_intervals"})
"""Hash fields that differ between two evaluation jobs; every other field is the same for all of them."""


@dataclass(frozen=True)
class JobTemplate:
    """What every evaluation job on one queue shares, taken from a job RQ built itself."""

    func_name: str
    dumps: Callable[[Any], bytes]
    """The queue serializer's ``dumps``; orjson's for RQ's JSON serializer (same JSON, a tenth of the time)."""
    shared_fields: dict[str, bytes]
    digest: str
    """Names the shared fields' content: the template's Redis key carries it."""


_templates: dict[tuple[Any, ...], JobTemplate] = {}


def evaluation_job(queue: Queue, portal_id: str, task_id: int, *, cause: str, event_name: str | None,
                   event_id: str | None, rules_digest: str | None = None) -> Job:
    """The job ``queueing.enqueue_evaluation`` would queue, built by RQ in memory only."""
    kwargs, meta, description = queueing.evaluation_spec(portal_id, task_id, cause, event_name, event_id,
                                                         rules_digest)
    job = queue.create_job(queueing.EVALUATE_TASK, kwargs=kwargs, timeout=queueing.EVALUATION_TIMEOUT_SECONDS,
                           result_ttl=queueing.RESULT_TTL_SECONDS, failure_ttl=queueing.FAILURE_TTL_SECONDS,
                           retry=queueing.evaluation_retry(), meta=meta, description=description)
    job.enqueued_at = now()  # set by _prepare_for_queue at enqueue time, like origin and status
    return job


def queue_unless_pending(redis: Redis, queue: Queue, portal_id: str, task_id: int, *, event_name: str,
                         event_id: str, pending_key: str, pending_ttl: int, waiting_key: str,
                         rules_digest: str | None = None, max_waiting: int = 0) -> bool:
    """Set the task's pending mark and, only if it was not set, queue its evaluation; one round trip.

    Returns:
        True when this call queued the evaluation, False when one already waits (nothing written).

    Raises:
        QueueFull: ``max_waiting`` tasks (if > 0) already wait; nothing was written.
    """
    template = job_template(queue)
    job_id = new_job_id()
    template_key = keys.job_template(portal_id, template.digest)
    script_keys = (pending_key, queue.redis_queues_keys, queue.job_class.key_for(job_id), queue.key, waiting_key,
                   template_key)
    args = (event_id, pending_ttl, job_id, task_id, max_waiting,
            *own_fields(template, portal_id, task_id, "event", event_name, event_id, rules_digest))
    answer = run_script(redis, script(redis, COALESCE_ENQUEUE), script_keys, args)
    if answer == -1:  # first event after a deploy, a flush or the template's expiry
        write_template(redis, template_key, template)
        answer = run_script(redis, script(redis, COALESCE_ENQUEUE), script_keys, args)
        if answer == -1:
            raise ResponseError("the job template vanished as soon as it was written")
    if answer == -2:
        raise QueueFull(f"{max_waiting} tasks already wait to be evaluated")
    return bool(answer == 1)


class QueueFull(Exception):
    """The portal has as many tasks waiting as ``TASKWARDEN_MAX_WAITING`` allows: Redis takes no more."""


def new_job_id() -> str:
    """A random (version 4) UUID, as RQ's own ids, from ``random`` rather than ``os.urandom``: one system call
    fewer per event, and ids need to be unique, not secret. Python reseeds ``random`` in every forked child,
    so two web processes never share a sequence."""
    return str(UUID(int=random.getrandbits(128), version=4))


def write_template(redis: Redis, key: str, template: JobTemplate) -> None:
    """Store the shared fields for the script to copy; they expire so that old versions clean up after
    themselves (the next event simply writes them again)."""
    pipe = redis.pipeline(transaction=True)
    pipe.delete(key)
    pipe.hset(key, mapping=template.shared_fields)  # type: ignore[arg-type]
    pipe.expire(key, TEMPLATE_TTL_SECONDS)
    pipe.execute()


def own_fields(template: JobTemplate, portal_id: str, task_id: int, cause: str, event_name: str | None,
               event_id: str | None, rules_digest: str | None = None) -> list[Any]:
    """The per-job hash fields, serialised as ``Job.to_dict`` serialises them, except that ``data`` is
    left uncompressed: ``Job.restore`` takes it either way, and compressing ~200 bytes per event cost
    more than it saved."""
    kwargs, meta, description = queueing.evaluation_spec(portal_id, task_id, cause, event_name, event_id,
                                                         rules_digest)
    stamp = rq_timestamp(time.time())
    dumps = template.dumps
    return ["created_at", stamp, "data", dumps((template.func_name, None, (), kwargs)),
            "retry_intervals", orjson.dumps(queueing.jittered_retry_intervals()), "description", description,
            "enqueued_at", stamp, "meta", dumps(meta)]


_second: tuple[int, str] = (0, "")


def rq_timestamp(when: float) -> str:
    """``rq.utils.utcformat`` of a UNIX time, with the date and time up to the second formatted once per
    second: ``strftime`` per event showed in the profile."""
    global _second
    second, micros = divmod(round(when * 1_000_000), 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micros:06d}Z"


def job_template(queue: Queue) -> JobTemplate:
    """The shared fields of this queue's evaluation jobs, from a reference job (built once per process).

    Keyed by everything the shared fields depend on, so a changed setting never meets a stale template.
    """
    cache_key = (queue.name, queue.serializer, queueing.EVALUATE_TASK, queueing.EVALUATION_TIMEOUT_SECONDS,
                 queueing.RESULT_TTL_SECONDS, queueing.FAILURE_TTL_SECONDS, len(queueing.RETRY_INTERVALS_SECONDS))
    template = _templates.get(cache_key)
    if template is None:
        reference = evaluation_job(queue, "-", 1, cause="event", event_name=None, event_id=None)
        shared = {name: _encode(value) for name, value in sorted(reference.to_dict().items())
                  if name not in OWN_FIELDS and value is not None}
        digest = hashlib.sha1(repr(sorted(shared.items())).encode(), usedforsecurity=False).hexdigest()[:16]
        dumps = orjson.dumps if queue.serializer is JSONSerializer else queue.serializer.dumps
        template = _templates[cache_key] = JobTemplate(str(reference.func_name), dumps, shared, digest)
    return template


def _encode(value: Any) -> bytes:
    """One shared field as redis-py would send it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # JobStatus is a str enum: its value, as redis-py sends it
        return value.encode()
    return str(value).encode()
