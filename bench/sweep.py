"""Sweep benchmarks: requests a sweep takes, against the bound on reads, at 10,000 tasks and 50,000 entries.

Without ``--layout``: a full sweep at the standard budget, first ``--dry-run`` (reads only: at most 1.2 x the
lower bound ceil((tasks + entries) / 2,500) + 3), then for real, where the writes add ceil(writes / 50)
requests to the bound. Prints one JSON line.

With ``--layout dense|offset|sparse|clustered|gap|all``: for each layout of the sandbox seed (``sandbox.seed``),
budget off, requests counted by the portal: a full sweep (``--dry-run``), then ``tasks`` sweeps (``--dry-run``)
finding k = 0, 3 and 500 changed tasks, each against its bound (full: 1.2 x ceil((tasks + entries) / 2,500) + 3;
tasks: 1.2 x ceil(k / 2,500) + 3, and 2 when nothing changed). A first ``tasks`` sweep with no rule to apply
sets the cursor; then tasks spread over the whole ID range are edited through the sandbox's control API.
Prints one JSON line per layout.

Run: ``make bench-sweep`` (or ``python -m bench.sweep [--layout all]``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from typing import Any

from bench import common

RULES = """
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""
NO_SWEEP_RULES = """
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    sweep: false
    params: {max_seconds: 28800}
"""
LAYOUTS = ("dense", "offset", "sparse", "clustered", "gap")
CHANGED = (0, 3, 500)
"""Changed tasks each measured ``tasks`` sweep finds."""
UNTHROTTLED = 10_000
"""Requests per second and burst of the client's meter with the budget off."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--layout", choices=(*LAYOUTS, "all"), help="Measure sweeps per ID layout, budget off.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    sys.path.insert(0, str(common.ROOT))
    if args.layout is None:
        print(json.dumps(standard_budget(args.tasks, args.entries, args.redis_url)))
        return 0
    for layout in LAYOUTS if args.layout == "all" else (args.layout,):
        print(json.dumps(by_layout(layout, args.tasks, args.entries, args.redis_url)), flush=True)
    return 0


def standard_budget(task_count: int, entry_count: int, redis_url: str) -> dict[str, Any]:
    """A full sweep at 2 requests/s with a burst of 50, dry run then enforcing."""
    from workers.sweeps import run_sweep

    common.flush_db(redis_url)
    sandbox = common.start_sandbox(f"{task_count}:{entry_count}")
    rt = _runtime(redis_url, RULES, sandbox)
    over = sum(1 for entry in sandbox.portal.entries.values() if entry["SECONDS"] > 28800)
    read_bound = math.ceil((task_count + entry_count) / 2500)
    result: dict[str, Any] = {"bench": "sweep", "tasks": task_count, "entries": entry_count,
                              "requests_lower_bound_reads": read_bound}
    for label, dry_run in (("dry_run", True), ("enforce", False)):
        sandbox.portal.requests.clear()
        started = time.monotonic()
        stats = run_sweep(rt, "full", dry_run=dry_run)
        wall = time.monotonic() - started
        requests = len(sandbox.portal.requests)
        bound = read_bound + (0 if dry_run else math.ceil(over / 50))
        result[label] = {"requests": requests, "requests_lower_bound": bound, "ratio": round(requests / bound, 3),
                         "wall_s": round(wall, 1),
                         "wall_lower_bound_s": max(0.0, bound - common.BURST) / common.RATE,
                         "tasks_seen": stats.tasks_seen, "entries_seen": stats.entries_seen,
                         "changed": stats.changed, "would_change": stats.would_change,
                         "query_limit_exceeded": sum(1 for r in sandbox.portal.requests
                                                     if r["error"] == "QUERY_LIMIT_EXCEEDED")}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    sandbox.stop()
    common.flush_db(redis_url)
    return result


def by_layout(layout: str, task_count: int, entry_count: int, redis_url: str) -> dict[str, Any]:
    """One layout, budget off: a full sweep, then tasks sweeps finding 0, 3 and 500 changed tasks."""
    from sandbox.control import SandboxControl
    from workers.sweeps import run_sweep

    common.flush_db(redis_url)
    sandbox = common.start_sandbox(f"{layout}:{task_count}:{entry_count}", burst=0)
    task_ids, entry_ids = sorted(sandbox.portal.tasks), sorted(sandbox.portal.entries)
    rt = _runtime(redis_url, RULES, sandbox, budget=False)
    result: dict[str, Any] = {"bench": "sweep", "layout": layout, "tasks": task_count, "entries": entry_count,
                              "task_ids": [task_ids[0], task_ids[-1]], "entry_ids": [entry_ids[0], entry_ids[-1]]}
    started = time.monotonic()
    full, requests = _counted(sandbox, lambda: run_sweep(rt, "full", dry_run=True))
    result["full"] = {"requests": requests, "bound": _bound(task_count + entry_count),
                      "tasks_seen": full.tasks_seen, "entries_seen": full.entries_seen,
                      "would_change": full.would_change, "wall_s": round(time.monotonic() - started, 1)}
    run_sweep(_runtime(redis_url, NO_SWEEP_RULES, sandbox, budget=False), "tasks")
    control = SandboxControl(sandbox.url, timeout=60)
    spread = [task_ids[index * len(task_ids) // max(CHANGED)] for index in range(max(CHANGED))]
    edited = 0
    for k in CHANGED:
        for task_id in spread[edited:k]:
            control.update_task(task_id, TITLE=f"edited {task_id}")
        edited = k
        stats, requests = _counted(sandbox, lambda: run_sweep(rt, "tasks", dry_run=True))
        result[f"tasks_k{k}"] = {"found": stats.tasks_seen, "requests": requests, "bound": 2 if k == 0 else _bound(k)}
    result["within_bounds"] = all(result[key]["requests"] <= result[key]["bound"]
                                  for key in ("full", *(f"tasks_k{k}" for k in CHANGED)))
    sandbox.stop()
    common.flush_db(redis_url)
    return result


def _bound(rows: int) -> float:
    """The specification's bound for a sweep that reads ``rows`` tasks and entries (or finds ``rows`` changed)."""
    return round(1.2 * math.ceil(rows / 2500) + 3, 1)


def _counted(sandbox: Any, sweep: Any) -> tuple[Any, int]:
    """Run ``sweep``; return its stats and the requests the portal served meanwhile."""
    sandbox.portal.requests.clear()
    stats = sweep()
    return stats, len(sandbox.portal.requests)


def _runtime(redis_url: str, rules: str, sandbox: Any, budget: bool = True) -> Any:
    from app import create_app

    settings = common.settings(redis_url, common.rules_file(rules), sandbox)
    if not budget:
        settings.update(b24_rate_limit=UNTHROTTLED, b24_rate_burst=UNTHROTTLED)
    return create_app({"SETTINGS": settings}).extensions["taskwarden"]


if __name__ == "__main__":
    sys.exit(main())
