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
from portals import registry
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
        """Every portal's counters; in application mode each sample carries its ``portal`` (member_id)."""
        redis = self.rt.redis
        app_mode = self.rt.settings.app_mode
        portals = registry.member_ids(redis) if app_mode else [self.rt.portal.id]
        extra = ["portal"] if app_mode else []

        def tail(portal: str) -> list[str]:
            return [portal] if app_mode else []

        counted = {portal: metrics.read(redis, portal) for portal in portals}
        for name, (doc, label_names) in COUNTERS.items():
            family = CounterMetricFamily(f"taskwarden_{name}", doc, labels=[*label_names, *extra])
            for portal in portals:
                for labels, value in counted[portal].get(name, []):
                    family.add_metric([*(labels.get(label, "") for label in label_names), *tail(portal)], value)
            yield family
        missed = CounterMetricFamily("taskwarden_missed_by_events", "Changes first made by a sweep that events "
                                     "should have brought, by rule.", labels=["rule", *extra])
        violations = CounterMetricFamily("taskwarden_lock_violations", "Times a task was evaluated twice at once.",
                                         labels=extra)
        sweeps = GaugeMetricFamily("taskwarden_last_sweep_timestamp_seconds", "When each sweep last completed.",
                                   labels=["kind", *extra])
        for portal in portals:
            for rule, count in redis.hgetall(keys.missed_by_events(portal)).items():
                missed.add_metric([_text(rule), *tail(portal)], float(count))
            violations.add_metric(tail(portal), sum(float(v) for v in redis.hvals(keys.lock_violations(portal))))
            for kind, stamp in redis.hgetall(keys.sweeps_completed(portal)).items():
                sweeps.add_metric([_text(kind), *tail(portal)], float(stamp))
        yield missed
        yield violations
        yield from self._queues()
        yield sweeps

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
