"""A full sweep at the standard budget (issue 6, item 4): 10,000 tasks and 50,000 time entries.

The lower bound on reads: every item must be read, and one batch request reads 2,500 of them (50 list
commands of 50 rows), so reads >= (tasks + entries) / 2,500 requests. The sweep is run twice: with
``--dry-run`` (reads only, the figure the target is about: <= 1.2x that bound) and then for real, where the
writes add ceil(writes / 50) requests to the bound. Prints one JSON line.

Run: ``make bench-sweep`` (or ``python -m bench.sweep``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time

from bench import common

RULES = """
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    sys.path.insert(0, str(common.ROOT))
    common.flush_db(args.redis_url)
    sandbox = common.start_sandbox(f"{args.tasks}:{args.entries}")
    from app import create_app
    from workers.sweeps import run_sweep

    rt = create_app({"SETTINGS": common.settings(args.redis_url, common.rules_file(RULES), sandbox)}).extensions[
        "taskwarden"]
    over = sum(1 for entry in sandbox.portal.entries.values() if entry["SECONDS"] > 28800)
    read_bound = math.ceil((args.tasks + args.entries) / 2500)
    result: dict[str, object] = {"bench": "sweep", "tasks": args.tasks, "entries": args.entries,
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
    print(json.dumps(result))
    sandbox.stop()
    common.flush_db(args.redis_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
