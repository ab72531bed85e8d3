"""Application mode under load: P sandbox portals, each at the standard budget, all changed at once.

Prints one JSON line: each portal's requests against its own bound (ceil(commands / 50)), the
``QUERY_LIMIT_EXCEEDED`` answers, the slowest portal's completion time, aggregate tasks/s, the workers' own CPU
time per evaluated task (the worker processes and their work horses, from the kernel's accounting of this
process's children: the sandbox and the web run in this process's threads, so they are not in it), and the
workers' peak RSS. With ``--expire`` every portal's access token expires once the run is under way, and the
line gives the refresh calls per portal (the target is 1).

    python -m bench.portals --redis-url redis://127.0.0.1:6379/11 [--portals 50] [--tasks 1000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import socket
import threading
import time
from typing import Any

from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from bench.common import MemorySampler, flush_db, rules_file, start_workers, wait_all
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
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--portals", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--expire", action="store_true", help="Expire every access token once the run is going.")
    args = parser.parse_args()
    flush_db(args.redis_url)
    try:
        print(json.dumps(run(args.redis_url, args.portals, args.tasks, args.workers, args.expire)), flush=True)
    finally:
        flush_db(args.redis_url)


def run(redis_url: str, portals: int, tasks: int, workers: int, expire: bool) -> dict[str, Any]:
    sandbox = start_in_thread(SandboxConfig(burst=0))  # the webhook portal is unused; app portals have budgets
    control = SandboxControl(sandbox.url)
    client_id, client_secret = control.app_credentials()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    values = {"redis_url": redis_url, "rules_file": rules_file(RULES), "b24_app_client_id": client_id,
              "b24_app_client_secret": client_secret, "b24_oauth_url": control.oauth_url(),
              "b24_allowed_portals": "127.0.0.1", "taskwarden_public_url": f"http://127.0.0.1:{port}",
              "taskwarden_secret_key": Fernet.generate_key().decode(), "log_level": "WARNING",
              "taskwarden_pass_size": 2500}
    app = _serve(values, port)
    names = [f"p{index:03d}" for index in range(portals)]
    members = {}
    for name in names:
        members[name] = control.add_portal(name, seed=f"{tasks}:{tasks}")["member_id"]
        status, body = control.install(name, f"http://127.0.0.1:{port}/bitrix24/install")
        if status != 200:
            raise SystemExit(f"install of {name} failed: {status} {body}")
        control.clear_requests(portal=name)
    install_calls = {name: control.oauth_calls(name) for name in names}
    queued = _queue_everything(app, members, tasks)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    processes = start_workers(workers, {**values, "log_level": "WARNING"})
    if expire:
        threading.Timer(2.0, _expire_all, args=(control, names)).start()
    with MemorySampler([p.pid for p in processes]) as memory:
        wait_all(processes, timeout=3600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_portal = {name: _portal_figures(control.requests(portal=name), started) for name in names}
    slowest = max((figures["done_after_s"] for figures in per_portal.values()), default=0.0)
    result: dict[str, Any] = {
        "bench": "portals", "portals": portals, "tasks_per_portal": tasks, "workers": workers,
        "tasks_queued": queued, "worst_requests_ratio": max(f["ratio"] for f in per_portal.values()),
        "query_limit_exceeded": sum(f["query_limit_exceeded"] for f in per_portal.values()),
        "slowest_portal_s": round(slowest, 1), "tasks_per_s": round(queued / slowest, 1) if slowest else None,
        "worker_cpu_us_per_task": round(cpu / queued * 1e6) if queued else None,
        "peak_worker_rss_mb": round(memory.peak_worker_kb / 1024, 1),
        "peak_work_horse_rss_mb": round(memory.peak_horse_kb / 1024, 1),
        "requests_by_portal": {name: [f["requests"], f["bound"]] for name, f in per_portal.items()}}
    result["entries_over_cap_left"] = sum(int(entry["SECONDS"]) > 28800 for name in names
                                          for entry in control.entries(portal=name))
    result["failed_jobs"] = app.extensions["taskwarden"].queue().failed_job_registry.count
    result["writes"] = sum(f["writes"] for f in per_portal.values())
    if expire:
        result["refresh_calls_per_portal"] = sorted({control.oauth_calls(name) - install_calls[name]
                                                     for name in names})
    sandbox.stop()
    return result


def _expire_all(control: SandboxControl, names: list[str]) -> None:
    for name in names:
        control.expire_tokens(name)


def _serve(values: dict[str, Any], port: int) -> Any:
    from app import create_app

    app = create_app({"SETTINGS": values})
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return app


def _queue_everything(app: Any, members: dict[str, str], tasks: int) -> int:
    """Every task of every portal, queued at once through the same coalescing as an event (the dense seed
    numbers a portal's tasks 1..N)."""
    from queueing import coalesce_evaluation

    rt = app.extensions["taskwarden"]
    queued = 0
    for member_id in members.values():
        digest = rt.for_portal(member_id).rules.digest
        for task_id in range(1, tasks + 1):
            status = coalesce_evaluation(rt.queue(), member_id, task_id, event_name="ONTASKUPDATE",
                                         event_id=f"ONTASKUPDATE:{task_id}:bench", rules_digest=digest)
            queued += status == "queued"
    return queued


def _portal_figures(log: list[dict[str, Any]], started: float) -> dict[str, Any]:
    commands = sum(len(entry.get("commands") or []) or 1 for entry in log)
    bound = max(1, math.ceil(commands / 50))
    writes = sum(1 for entry in log for command in entry.get("commands") or [entry]
                 if str(command.get("method", "")).endswith((".update", ".delete")))
    return {"requests": len(log), "bound": bound, "ratio": round(len(log) / bound, 3), "writes": writes,
            "query_limit_exceeded": sum(entry.get("status") == 503 for entry in log),
            "done_after_s": max((entry["at"] for entry in log), default=started) - started}


if __name__ == "__main__":
    main()
