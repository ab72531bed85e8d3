"""Sentinel failover: how long intake has no master, what it spools meanwhile, and what
``TASKWARDEN_REDIS_MIN_REPLICAS=1`` costs an event.

Everything runs on a topology of the bench's own (``tests/test_sentinel_topology.py``: a master, a replica
and three Sentinels on loopback, a master called down after 1 s without an answer), never on the machine's
Redis.

- ``wait_cost``: intake's coalescing of one event (one script round trip to the master) for events of
  distinct tasks, in this process, without and with a ``WAIT`` for one replica, in alternating rounds:
  microseconds per event at the median and the 99th percentile.
- ``failover``, once without and once with ``TASKWARDEN_REDIS_MIN_REPLICAS=1``: the production web command
  (gunicorn with ``config/gunicorn.py``) takes events from threads at a steady pace, given only the
  Sentinels' addresses, and the master is killed with SIGKILL. ``sentinel_s``: from the kill until every
  Sentinel names the new master. ``intake_s``: from the kill until the first event sent after it was
  answered ``200`` (with MIN_REPLICAS=1 the new master has no replica left, so every later event is spooled
  as well and this stays null). ``spooled``: events answered ``202``; ``errors``: anything but 2xx.

Prints one JSON line. Run: ``make bench-failover`` (or ``python -m bench.failover --events 2000``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rq import Queue
from rq.serializers import JSONSerializer

import queueing
from handlers.coalesce import coalesce
from redis_connect import connect
from tests.helpers import poll
from tests.test_sentinel_failover import Load, Service, service_env
from tests.test_sentinel_topology import SentinelTopology

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 5
LOAD_SENDERS, LOAD_PACE_SECONDS = 4, 0.02
"""The failover's load: at most 200 events/s, well under what intake takes, so that it measures Redis."""
EVENTS_BEFORE, EVENTS_AFTER = 100, 100
"""Events answered before the kill, and after the Sentinels named the new master."""


def wait_cost(directory: Path, events: int) -> dict[str, Any]:
    """Microseconds per coalesced event without and with a WAIT for one replica (alternating rounds)."""
    topology = SentinelTopology(directory)
    topology.start()
    try:
        clients = {replicas: connect(topology.settings(taskwarden_redis_min_replicas=replicas)) for replicas in (0, 1)}
        timings: dict[int, list[float]] = {0: [], 1: []}
        task = 0
        per_round = max(events // ROUNDS, 1)
        for _round in range(ROUNDS):
            for replicas, client in clients.items():
                queue = Queue(queueing.EVALUATION_QUEUE, connection=client, serializer=JSONSerializer)
                coalesce(client, queue, "bench", 0, event_name="ONTASKUPDATE", event_id="warm")  # template, script
                for _ in range(per_round):
                    task += 1
                    started = time.perf_counter()
                    coalesce(client, queue, "bench", task, event_name="ONTASKUPDATE", event_id=f"e{task}")
                    timings[replicas].append((time.perf_counter() - started) * 1e6)
    finally:
        topology.stop()
    return {"events": per_round * ROUNDS,
            **{f"min_replicas_{replicas}": _quantiles(values) for replicas, values in timings.items()}}


def _quantiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50_us": round(cuts[49], 1), "p99_us": round(cuts[98], 1), "mean_us": round(statistics.fmean(values), 1)}


def failover(directory: Path, min_replicas: int) -> dict[str, Any]:
    """Kill the master under a steady load of events on the production web command; what intake saw."""
    topology = SentinelTopology(directory / "topology")
    topology.start()
    service_dir = directory / "service"
    service_dir.mkdir(parents=True)
    service = Service(service_env(topology, service_dir, "http://127.0.0.1:9", min_replicas), service_dir)
    try:
        service.start("web", sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"),
                      "app:create_app()")
        service.url = f"http://{service.env['TASKWARDEN_BIND']}"
        poll(lambda: _ready(service.url) or not all(service.running().values()), "gunicorn to be ready", 60)
        with Load(service.url, list(range(1, 1_000_000)), LOAD_SENDERS, LOAD_PACE_SECONDS) as load:
            poll(lambda: load.answered() >= EVENTS_BEFORE, "events before the kill", 60)
            old = topology.master_port()
            if old is None:
                raise RuntimeError("no Sentinel names a master")
            topology.kill(old)
            killed = time.monotonic()
            topology.wait_for_new_master(old)
            sentinel_s = time.monotonic() - killed
            after = load.answered() + EVENTS_AFTER
            poll(lambda: load.answered() >= after, "events after the failover", 120)
        answers = load.answers
    finally:
        service.stop()
        topology.stop()
    back = [sent for _task, status, _outcome, sent in answers if status == 200 and sent > killed]
    sent_times = [answer[3] for answer in answers]
    return {"min_replicas": min_replicas, "sentinel_s": round(sentinel_s, 2),
            "intake_s": round(min(back) - killed, 2) if back else None, "events": len(answers),
            "events_per_s": round(len(answers) / max(max(sent_times) - min(sent_times), 1e-9)),
            "spooled": sum(1 for answer in answers if answer[1] == 202),
            "errors": sum(1 for answer in answers if not 200 <= answer[1] < 300)}


def _ready(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/readyz", timeout=2).ok
    except requests.RequestException:
        return False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per setting for the WAIT cost")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="taskwarden-failover-") as workdir:
        base = Path(workdir)
        return {"bench": "failover", "wait_cost": wait_cost(base / "wait", args.events),
                "failover": [failover(base / f"failover-{replicas}", replicas) for replicas in (0, 1)]}


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
