"""Enforcement at the portal's budget (issue 6, items 3 and 5): 10,000 tasks, half needing one change.

The sandbox enforces the standard budget (2 requests/s, burst 50); the service meters itself with the
same budget. Every task gets an event (queued through intake's coalescing, as a portal's events would),
then N worker processes run in burst mode until the queue is empty. Prints one JSON line: tasks/s,
requests used and their lower bound, wall time and its lower bound, QUERY_LIMIT_EXCEEDED answers, tasks
left unfixed, and peak worker memory.

Lower bounds: the commands needed are the writes plus the reads at 50 tasks per command; one batch
request carries 50 commands, so requests >= ceil(commands / 50); and the budget lets the first 50
requests through at once and then 2 per second, so wall time >= (requests - 50) / 2 seconds.

Wall time is the workers' span, from the first evaluation job started to the last one ended, by RQ's own
job records: in production workers are running before events come, so their start-up (~1 s of imports)
and their exit at the end of a burst run (~1 s, RQ stopping its scheduler) are not enforcement time.
Both are in ``wall_with_process_start_exit_s``.

Run: ``make bench-enforce`` (or ``python -m bench.enforce --tasks 10000 --workers 2``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time

from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench import common

RULES = """
timezone: Europe/Berlin
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800, note: " (capped)"}
  - name: default-deadline
    policy: deadline
    params: {set_if_missing: {workdays: 2, at: "18:00"}}
  - name: project-code
    policy: mandatory_userfields
    params: {fields: {UF_PROJECT_CODE: {default: "GEN-000"}}}
"""


def unfixed(portal: object, cap: int = 28800) -> int:
    """Tasks still out of compliance, read straight from the sandbox's state."""
    tasks = portal.tasks  # type: ignore[attr-defined]
    entries = portal.entries  # type: ignore[attr-defined]
    over = {entry["TASK_ID"] for entry in entries.values() if entry["SECONDS"] > cap}
    bad = {task_id for task_id, task in tasks.items() if task["DEADLINE"] is None or not task.get("UF_PROJECT_CODE")}
    return len(over | bad)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--layout", default="offset", choices=("dense", "offset", "sparse", "clustered", "gap"),
                        help="How the portal numbers its tasks (sandbox seeds); default from a million, with holes.")
    args = parser.parse_args()
    sys.path.insert(0, str(common.ROOT))
    common.flush_db(args.redis_url)
    sandbox = common.start_sandbox(f"{args.layout}:enforce:{args.tasks}")
    values = common.settings(args.redis_url, common.rules_file(RULES), sandbox)
    from app import create_app
    from handlers.coalesce import coalesce

    rt = create_app({"SETTINGS": values}).extensions["taskwarden"]
    needing = unfixed(sandbox.portal)
    for task_id in sorted(sandbox.portal.tasks):  # one ONTASKUPDATE per task, as the portal would send
        coalesce(rt.redis, rt.queue(), rt.portal.id, task_id, event_name="ONTASKUPDATE",
                 event_id=f"ONTASKUPDATE:{task_id}:0:1")
    sandbox.portal.requests.clear()
    started = time.monotonic()
    workers = common.start_workers(args.workers, values)
    with common.MemorySampler([worker.pid for worker in workers]) as memory:
        common.wait_all(workers, timeout=3600)
    wall_processes = time.monotonic() - started
    wall = job_span(rt.queue())
    log = list(sandbox.portal.requests)
    commands = needing + math.ceil(args.tasks / 50)
    requests_bound = math.ceil(commands / 50)
    time_bound = max(0, requests_bound - common.BURST) / common.RATE
    result = {
        "bench": "enforce", "tasks": args.tasks, "layout": args.layout, "workers": args.workers,
        "tasks_needing_change": needing,
        "tasks_per_s": round(args.tasks / wall, 1), "requests": len(log), "requests_lower_bound": requests_bound,
        "requests_ratio": round(len(log) / requests_bound, 3), "wall_s": round(wall, 1),
        "wall_lower_bound_s": time_bound, "wall_ratio": round(wall / time_bound, 3) if time_bound else None,
        "wall_with_process_start_exit_s": round(wall_processes, 1),
        "query_limit_exceeded": sum(1 for entry in log if entry["error"] == "QUERY_LIMIT_EXCEEDED"),
        "tasks_left_unfixed": unfixed(sandbox.portal),
        "peak_worker_rss_mb": round(memory.peak_worker_kb / 1024, 1),
        "peak_work_horse_rss_mb": round(memory.peak_horse_kb / 1024, 1),
        "requests_by_method": _by_method(log),
    }
    print(json.dumps(result))
    sandbox.stop()
    common.flush_db(args.redis_url)
    return 0


def job_span(queue: Queue) -> float:
    """Seconds from the first evaluation job started to the last one ended (finished or failed)."""
    ids = [*FinishedJobRegistry(queue=queue).get_job_ids(), *FailedJobRegistry(queue=queue).get_job_ids()]
    jobs = [job for job in Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer) if job]
    started = min(_epoch(job.started_at) for job in jobs if job.started_at)
    ended = max(_epoch(job.ended_at) for job in jobs if job.ended_at)
    return ended - started


def _epoch(moment: dt.datetime) -> float:
    """RQ keeps UTC times, naive or aware depending on the version."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _by_method(log: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in log:
        name = f"{entry['api']}:{entry['method']}"
        counts[name] = counts.get(name, 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
