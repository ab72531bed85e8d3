"""``GET /metrics``: Prometheus text from counters in Redis plus gauges read at scrape time.

A custom collector (as rq-exporter does, without depending on it): queue depths and the failed registry
come from RQ's own keys; counters from ``metrics.read``; last sweeps, missed-by-events and lock
violations from their Redis hashes. No label ever holds a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

import keys
import metrics
import queueing
from runtime import Runtime

bp = Blueprint("metrics", __name__)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
"""What ``generate_latest`` writes; passed as ``content_type`` (``mimetype`` would append a second charset)."""

COUNTERS = {
    "events": ("Events received by intake, by outcome.", ("outcome",)),
    "evaluations": ("Task evaluations run by workers, by outcome.", ("outcome",)),
    "decisions": ("Policy decisions, by rule and outcome.", ("rule", "outcome")),
    "rest_requests": ("HTTP requests to the Bitrix24 REST API, by method and answer code.", ("method", "code")),
    "budget_wait_seconds": ("Seconds spent waiting for the shared request budget.", ()),
    "operating_pauses": ("Methods paused for their operating-time budget.", ("method",)),
    "rules_mismatches": ("Jobs a worker ran with other rules than the process that queued them.", ()),
}


class RedisCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        redis, portal = self.rt.redis, self.rt.portal.id
        counted = metrics.read(redis, portal)
        for name, (doc, label_names) in COUNTERS.items():
            family = CounterMetricFamily(f"taskwarden_{name}", doc, labels=list(label_names))
            for labels, value in counted.get(name, []):
                family.add_metric([labels.get(label, "") for label in label_names], value)
            yield family
        yield self._hash_counter("missed_by_events", "Changes first made by a sweep that events should have "
                                 "brought, by rule.", keys.missed_by_events(portal), "rule")
        violations = CounterMetricFamily("taskwarden_lock_violations", "Times a task was evaluated twice at once.")
        violations.add_metric([], sum(float(v) for v in redis.hvals(keys.lock_violations(portal))))
        yield violations
        yield from self._queues()
        sweeps = GaugeMetricFamily("taskwarden_last_sweep_timestamp_seconds", "When each sweep last completed.",
                                   labels=["kind"])
        for kind, stamp in redis.hgetall(keys.sweeps_completed(portal)).items():
            sweeps.add_metric([_text(kind)], float(stamp))
        yield sweeps

    def _hash_counter(self, name: str, doc: str, key: str, label: str) -> Metric:
        family = CounterMetricFamily(f"taskwarden_{name}", doc, labels=[label])
        for field, value in self.rt.redis.hgetall(key).items():
            family.add_metric([_text(field)], float(value))
        return family

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("taskwarden_queue_depth", "Jobs waiting per queue.", labels=["queue"])
        failed = GaugeMetricFamily("taskwarden_failed_jobs", "Jobs in RQ's failed registry.", labels=["queue"])
        for name in queueing.QUEUES:
            queue = self.rt.queue(name)
            depth.add_metric([name], queue.count)
            failed.add_metric([name], queue.failed_job_registry.count)
        yield depth
        yield failed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@bp.get("/metrics")
def prometheus_metrics() -> Any:
    rt: Runtime = current_app.extensions["taskwarden"]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(rt))
    try:
        body = generate_latest(registry)
    except RedisError as exc:
        return Response(f"# redis unavailable: {type(exc).__name__}\n", status=503, mimetype="text/plain")
    return Response(body, content_type=TEXT_FORMAT)
