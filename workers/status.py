"""One screen for the person on call: queues, workers, budget, sweeps, failures, recent decisions."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

from redis import Redis
from rq import Worker

import keys
import queueing
from config.rules import SWEEP_KINDS
from runtime import Runtime
from workers.failed import failed_jobs

RECENT_SECONDS = 3600
RECENT_SCAN_LIMIT = 50_000


def collect_status(rt: Runtime) -> dict[str, Any]:
    """Everything ``flask --app app status`` shows, as plain data (``--json`` prints it as is)."""
    return {"portal": rt.portal.id, "queues": _queues(rt), "workers": _workers(rt), "budget": _budget(rt),
            "sweeps": _sweeps(rt), "failed": [job.__dict__ for job in failed_jobs(rt, limit=5)],
            "decisions_last_hour": _recent_decisions(rt), "rules": _rules(rt)}


def _rules(rt: Runtime) -> dict[str, Any]:
    """This command's rules digest, each process's, and jobs run with other rules than they were queued with."""
    running = {_text(k): _text(v) for k, v in rt.redis.hgetall(keys.rules_running(rt.portal.id)).items()}
    mismatches = {_text(k): int(v) for k, v in rt.redis.hgetall(keys.rules_mismatches(rt.portal.id)).items()}
    return {"local": rt.rules.digest, "running": running, "mismatches": mismatches,
            "all_same": all(digest == rt.rules.digest for digest in running.values()) and not mismatches}


def _queues(rt: Runtime) -> list[dict[str, Any]]:
    rows = []
    for name in queueing.QUEUES:
        queue = rt.queue(name)
        rows.append({"queue": name, "queued": queue.count, "started": queue.started_job_registry.count,
                     "scheduled": queue.scheduled_job_registry.count, "failed": queue.failed_job_registry.count})
    return rows


def _workers(rt: Runtime) -> list[dict[str, Any]]:
    rows = []
    for worker in Worker.all(connection=rt.redis):
        job = worker.get_current_job()
        rows.append({"name": worker.name, "state": worker.get_state(), "queues": worker.queue_names(),
                     "job": job.description if job else None,
                     "last_heartbeat": worker.last_heartbeat.isoformat(timespec="seconds")
                     if worker.last_heartbeat else None})
    return rows


def budget_left(redis: Redis, portal_id: str, rate: float, burst: int) -> int:
    """Requests the portal's shared budget allows at once right now (its bucket, read off Redis' clock)."""
    seconds, micros = redis.time()
    now_ms = seconds * 1000 + micros / 1000
    tat = float(redis.get(keys.budget(portal_id)) or now_ms)
    return max(0, burst - math.ceil(max(0.0, tat - now_ms) / (1000 / rate)))


def _budget(rt: Runtime) -> dict[str, Any]:
    paused = {}
    for key in rt.redis.scan_iter(match=keys.paused(rt.portal.id, "*"), count=200):
        ttl = rt.redis.pttl(key)
        if ttl > 0:
            paused[_text(key).rsplit(":", 1)[1]] = round(time.time() + ttl / 1000)
    operating = {_text(method): json.loads(raw)["operating"]
                 for method, raw in rt.redis.hgetall(keys.operating(rt.portal.id)).items()}
    return {"rate_per_second": rt.portal.rate, "burst": rt.portal.burst,
            "tokens_left": budget_left(rt.redis, rt.portal.id, rt.portal.rate, rt.portal.burst), "paused_until": paused,
            "operating_seconds": operating, "operating_limit": rt.portal.operating_limit}


def _sweeps(rt: Runtime) -> list[dict[str, Any]]:
    completed = {_text(k): int(v) for k, v in rt.redis.hgetall(keys.sweeps_completed(rt.portal.id)).items()}
    schedules: dict[str, str] = {str(kind): expression for kind, expression in rt.rules.sweeps.items()}
    rows = []
    for kind in SWEEP_KINDS:
        cursor = {_text(k): _text(v) for k, v in rt.redis.hgetall(keys.cursor(rt.portal.id, kind)).items()}
        rows.append({"kind": kind, "schedule": schedules.get(kind, "-"), "last_completed": completed.get(kind),
                     "cursor": cursor, "running": bool(rt.redis.exists(keys.sweep_lock(rt.portal.id, kind)))})
    return rows


def _recent_decisions(rt: Runtime) -> dict[str, int]:
    since_ms = int((time.time() - RECENT_SECONDS) * 1000)
    outcomes: Counter[str] = Counter()
    entries: list[Any] = rt.redis.xrevrange(keys.audit(rt.portal.id), min=since_ms, count=RECENT_SCAN_LIMIT) or []
    for _entry_id, fields in entries:
        outcomes[json.loads(fields[b"d"])["outcome"]] += 1
    return dict(outcomes)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def render(status: dict[str, Any]) -> str:
    """The status as text for a terminal."""
    lines = [f"Taskwarden status — portal {status['portal']}", "", "Queues"]
    lines += [f"  {q['queue']:<24} queued {q['queued']:>5}  started {q['started']:>3}  scheduled {q['scheduled']:>4}"
              f"  failed {q['failed']:>4}" for q in status["queues"]]
    lines += ["", "Workers"] + ([f"  {w['name'][:32]:<32} {w['state']:<9} {w['job'] or '-'}"
                                 for w in status["workers"]] or ["  none running"])
    budget = status["budget"]
    lines += ["", f"Budget  {budget['tokens_left']}/{budget['burst']} requests left, {budget['rate_per_second']}/s"]
    lines += [f"  paused {method} until {time.strftime('%H:%M:%S', time.localtime(until))}"
              for method, until in budget["paused_until"].items()] or ["  no method paused"]
    lines += ["", "Sweeps"]
    for sweep in status["sweeps"]:
        done = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sweep["last_completed"])) \
            if sweep["last_completed"] else "never"
        state = " (running)" if sweep["running"] else ""
        cursor = sweep["cursor"] or "-"
        lines.append(f"  {sweep['kind']:<8} {sweep['schedule']:<14} last {done}{state}  cursor {cursor}")
    lines += ["", "Failed jobs"] + ([f"  {job['id']}  {job['reason']}" for job in status["failed"]] or ["  none"])
    rules = status["rules"]
    lines += ["", f"Rules   local {rules['local']}" + ("" if rules["all_same"] else "   DIFFERENT RULES RUNNING:")]
    lines += [f"  {process:<32} {digest}{'' if digest == rules['local'] else '  <- differs'}"
              for process, digest in sorted(rules["running"].items())]
    lines += [f"  jobs queued with {pair.replace('->', ' ran with ')}: {count}"
              for pair, count in sorted(rules["mismatches"].items())]
    recent = status["decisions_last_hour"]
    lines += ["", "Decisions in the last hour: " + (", ".join(f"{k} {v}" for k, v in sorted(recent.items())) or "none")]
    return "\n".join(lines)
