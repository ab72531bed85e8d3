"""Application mode under load: P sandbox portals, each at the standard budget, all changed at once.

Each portal holds T tasks numbered as real portals number them (from a million with holes, one in 1,000, two
blocks far apart, a hole of two million: the layouts take turns), half of them needing one change of one of
three policies. Every task of every portal is queued at once; W workers run until nothing is queued,
scheduled or running and every event the portals sent (the ONTASKUPDATE our writes cause) is delivered.

Prints one JSON line: each portal's requests against its own bound (ceil(commands / 50)), the
``QUERY_LIMIT_EXCEEDED`` answers, when the slowest portal had every change written and when its last request
(the recheck of what was written, ``TASKWARDEN_RECHECK_SECONDS`` later) was done, aggregate tasks/s, the
work horses' CPU time per evaluated task (the kernel's accounting of each worker's waited-for children, the
processes RQ forks to run jobs), the worker processes' own CPU (start-up, RQ's loop) and all of it with RQ's
scheduler and the exit (this process's children; the sandbox runs in this process's threads, and the web, the
production gunicorn, is a child stopped only after that is taken), and the workers' peak RSS.

With ``--expire`` every portal's access token expires once the run is under way, and the line gives the
refresh calls per portal (the target is 1). With ``--outage throttled`` (or ``unreachable``) it measures
fairness instead: portal A fails every call for 60 s with all its tasks queued while portal B's user removes a
deadline every 5 s, and the line gives how long each of B's fixes took.

    python -m bench.portals --redis-url redis://127.0.0.1:6379/11 [--portals 50] [--tasks 1000] [--workers 4]
    python -m bench.portals --redis-url redis://127.0.0.1:6379/11 --outage throttled
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import socket
import tempfile
import threading
import time
from typing import Any

from cryptography.fernet import Fernet

from bench.common import (
    ROOT,
    MemorySampler,
    env,
    flush_db,
    process_cpu,
    rules_file,
    start_server,
    start_workers,
    stop_all,
)
from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl
from sandbox.server import start_in_thread

RULES = """
timezone: Europe/Berlin
rules:
  - name: cap-time-entries
    policy: elapsed_cap
    params: {max_seconds: 28800, action: clamp, note: " (capped at 8h)"}
  - name: default-deadline
    policy: deadline
    params: {set_if_missing: {workdays: 2, at: "18:00"}}
  - name: project-code
    policy: mandatory_userfields
    params: {fields: {UF_PROJECT_CODE: {default: "GEN-000"}}}
"""
LAYOUTS = ("offset", "sparse", "clustered", "gap")
"""How the portals number their tasks, in turn: from a million with holes, one in 1,000, two blocks far apart,
a mass deletion's hole (``sandbox.seed``)."""
QUIET_SECONDS = 3.0
"""The run is over once nothing is queued, scheduled, running or undelivered for this long."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--portals", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--expire", action="store_true", help="Expire every access token once the run is going.")
    parser.add_argument("--outage", choices=("throttled", "unreachable"),
                        help="Instead: portal A answers 503 (or drops every connection) for 60 s with all its tasks "
                             "queued, while a user changes a task of portal B every 5 s; print B's fix latencies.")
    args = parser.parse_args()
    flush_db(args.redis_url)
    try:
        result = (run_outage(args.redis_url, args.outage, args.tasks, args.workers) if args.outage
                  else run(args.redis_url, args.portals, args.tasks, args.workers, args.expire))
        print(json.dumps(result), flush=True)
    finally:
        flush_db(args.redis_url)


class Bench:
    """The sandbox with its OAuth server, the web app serving intake and installs, and the service's settings."""

    def __init__(self, redis_url: str) -> None:
        self.sandbox = start_in_thread(SandboxConfig(burst=0))  # the webhook portal is unused
        self.control = SandboxControl(self.sandbox.url)
        client_id, client_secret = self.control.app_credentials()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.values = {"redis_url": redis_url, "rules_file": rules_file(RULES), "b24_app_client_id": client_id,
                       "b24_app_client_secret": client_secret, "b24_oauth_url": self.control.oauth_url(),
                       "b24_allowed_portals": "127.0.0.1", "taskwarden_public_url": f"http://127.0.0.1:{port}",
                       "taskwarden_secret_key": Fernet.generate_key().decode(), "log_level": "WARNING",
                       "taskwarden_pass_size": 2500}
        from app import create_app

        self.app = create_app({"SETTINGS": self.values})  # for queueing and watching, not served
        self.web_log = tempfile.NamedTemporaryFile(prefix="bench-portals-web-", suffix=".log", delete=False)  # noqa: SIM115
        self.web = start_server("app:create_app()", port, env(self.values), str(ROOT), self.web_log)
        self.url = f"http://127.0.0.1:{port}"
        self.members: dict[str, str] = {}

    def add_portal(self, name: str, seed: str) -> None:
        self.members[name] = self.control.add_portal(name, seed=seed)["member_id"]
        status, body = self.control.install(name, f"{self.url}/bitrix24/install")
        if status != 200:
            raise SystemExit(f"install of {name} failed: {status} {body}")
        self.control.clear_requests(portal=name)

    def queue_all(self, name: str) -> int:
        """Every task of the portal, queued at once through the same coalescing as an event."""
        from queueing import coalesce_evaluation

        rt = self.app.extensions["taskwarden"]
        member_id = self.members[name]
        digest = rt.for_portal(member_id).rules.digest
        return sum(coalesce_evaluation(rt.queue(), member_id, task_id, event_name="ONTASKUPDATE",
                                       event_id=f"ONTASKUPDATE:{task_id}:bench", rules_digest=digest) == "queued"
                   for task_id in self.control.task_ids(portal=name))

    def quiet(self) -> bool:
        """Nothing queued, scheduled (rechecks after our writes) or running, and no event left to deliver."""
        queue = self.app.extensions["taskwarden"].queue()
        if queue.count or queue.scheduled_job_registry.count or queue.started_job_registry.count:
            return False
        return not any(self.control.events(portal=name, outcome="pending") for name in self.members)

    def wait_quiet(self, timeout: float) -> None:
        deadline, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if not self.quiet():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_SECONDS:
                return
            time.sleep(0.5)
        raise SystemExit(f"the run did not end within {timeout:.0f} s")

    def failed_jobs(self) -> int:
        return int(self.app.extensions["taskwarden"].queue().failed_job_registry.count)

    def stop(self) -> None:
        """Stop the web process (after the workers' CPU was taken: it is a child too) and the sandbox."""
        stop_all([self.web])
        self.sandbox.stop()


def run(redis_url: str, portals: int, tasks: int, workers: int, expire: bool) -> dict[str, Any]:
    bench = Bench(redis_url)
    control = bench.control
    names = [f"p{index:03d}" for index in range(portals)]
    for index, name in enumerate(names):
        bench.add_portal(name, f"{LAYOUTS[index % len(LAYOUTS)]}:enforce:{tasks}")
    install_calls = {name: control.oauth_calls(name) for name in names}
    queued = sum(bench.queue_all(name) for name in names)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    processes = start_workers(workers, bench.values, burst=False)
    if expire:
        threading.Timer(2.0, _expire_all, args=(control, names)).start()
    with MemorySampler([p.pid for p in processes]) as memory:
        bench.wait_quiet(timeout=3600)
        own, horses = (sum(column) for column in zip(*(process_cpu(p.pid) for p in processes), strict=True))
        stop_all(processes)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_portal = {name: _portal_figures(control.requests(portal=name), started) for name in names}
    slowest = max((figures["done_after_s"] for figures in per_portal.values()), default=0.0)
    slowest_written = max((figures["written_after_s"] for figures in per_portal.values()), default=0.0)
    ratios = sorted(f["ratio"] for f in per_portal.values())
    result: dict[str, Any] = {
        "bench": "portals", "portals": portals, "tasks_per_portal": tasks, "workers": workers,
        "layouts": list(LAYOUTS), "tasks_queued": queued,
        "worst_requests_ratio": ratios[-1], "median_requests_ratio": ratios[len(ratios) // 2],
        "query_limit_exceeded": sum(f["query_limit_exceeded"] for f in per_portal.values()),
        "slowest_portal_written_s": round(slowest_written, 1), "slowest_portal_s": round(slowest, 1),
        "tasks_per_s": round(queued / slowest_written, 1) if slowest_written else None,
        "work_horse_cpu_us_per_task": round(horses / queued * 1e6) if queued else None,
        "worker_processes_cpu_s": {"work_horses": round(horses, 2), "workers_own": round(own, 2),
                                   "all_with_start_exit_and_rq_scheduler": round(cpu, 2)},
        "peak_worker_rss_mb": round(memory.peak_worker_kb / 1024, 1),
        "peak_work_horse_rss_mb": round(memory.peak_horse_kb / 1024, 1),
        "requests_by_portal": {name: [f["requests"], f["bound"]] for name, f in per_portal.items()}}
    result["entries_over_cap_left"] = sum(int(entry["SECONDS"]) > 28800 for name in names
                                          for entry in control.entries(portal=name))
    result["failed_jobs"] = bench.failed_jobs()
    result["writes"] = sum(f["writes"] for f in per_portal.values())
    if expire:
        result["refresh_calls_per_portal"] = sorted({control.oauth_calls(name) - install_calls[name]
                                                     for name in names})
    bench.stop()
    return result


OUTAGE_SECONDS = 60
EDIT_EVERY_SECONDS = 5


def run_outage(redis_url: str, mode: str, tasks: int, workers: int) -> dict[str, Any]:
    """Portal A fails every call for a minute with all its tasks queued; portal B's user removes a deadline
    every 5 s meanwhile. Each of B's fixes is timed from the edit to the deadline being set again."""
    bench = Bench(redis_url)
    control = bench.control
    bench.add_portal("a", f"offset:enforce:{tasks}")
    bench.add_portal("b", f"sparse:enforce:{tasks}")
    status, error = (503, "QUERY_LIMIT_EXCEEDED") if mode == "throttled" else (0, "")
    control.fault("*", status=status, error=error, description="Too many requests", times=10**9, portal="a")
    threading.Timer(OUTAGE_SECONDS, control.clear_faults, kwargs={"portal": "a"}).start()
    queued = bench.queue_all("a")
    b_tasks = [task_id for task_id in control.task_ids(portal="b")
               if control.task(task_id, portal="b")["DEADLINE"]][:OUTAGE_SECONDS // EDIT_EVERY_SECONDS]
    processes = start_workers(workers, bench.values, burst=False)
    latencies: list[float] = []
    try:
        for task_id in b_tasks:
            edited = time.monotonic()
            control.update_task(task_id, portal="b", DEADLINE=None)
            while not control.task(task_id, portal="b")["DEADLINE"]:
                if time.monotonic() - edited > 60:
                    raise SystemExit(f"B's task {task_id} was not fixed within 60 s")
                time.sleep(0.05)
            latencies.append(time.monotonic() - edited)
            time.sleep(max(0.0, EDIT_EVERY_SECONDS - (time.monotonic() - edited)))
        bench.wait_quiet(timeout=600)
    finally:
        stop_all(processes)
    a_requests = control.requests(portal="a")
    result = {"bench": "portals-outage", "mode": mode, "workers": workers, "a_tasks_queued": queued,
              "a_failed_requests": sum(entry.get("status") != 200 for entry in a_requests),
              "b_edits": len(latencies), "b_fix_s_max": round(max(latencies), 2),
              "b_fix_s_median": round(sorted(latencies)[len(latencies) // 2], 2),
              "a_over_cap_left_after": sum(int(entry["SECONDS"]) > 28800 for entry in control.entries(portal="a")),
              "failed_jobs": bench.failed_jobs()}
    bench.stop()
    return result


def _expire_all(control: SandboxControl, names: list[str]) -> None:
    for name in names:
        control.expire_tokens(name)


def _portal_figures(log: list[dict[str, Any]], started: float) -> dict[str, Any]:
    commands = sum(len(entry.get("commands") or []) or 1 for entry in log)
    bound = max(1, math.ceil(commands / 50))
    writes = sum(1 for entry in log for command in entry.get("commands") or [entry]
                 if str(command.get("method", "")).endswith((".update", ".delete")))
    return {"requests": len(log), "bound": bound, "ratio": round(len(log) / bound, 3), "writes": writes,
            "query_limit_exceeded": sum(entry.get("status") == 503 for entry in log),
            "done_after_s": max((entry["at"] for entry in log), default=started) - started,
            "written_after_s": max((entry["at"] for entry in log if _writes(entry)), default=started) - started}


def _writes(entry: dict[str, Any]) -> bool:
    return any(str(command.get("method", "")).endswith((".update", ".delete"))
               for command in entry.get("commands") or [entry])


if __name__ == "__main__":
    main()
