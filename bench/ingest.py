"""Intake throughput: Taskwarden's ``POST /bitrix24/events`` against a bare Flask endpoint (issue 6, item 1).

``make bench-ingest`` (or ``python -m bench.ingest``) starts both apps under the production gunicorn config
on 127.0.0.1, drives each in turn with real-shaped form-encoded ONTASKUPDATE events from load-generator
processes (keep-alive sockets, closed loop), and prints one JSON line. No worker runs, so every accepted
event's job stays queued and can be checked in Redis afterwards. The bench's Redis database (db 11 by
default) is flushed before and after; nothing else is touched.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-application-token-0123456789"  # noqa: S105 - a throwaway value for the local run
MEMBER_ID = "bench0000000000000000000000000000"
RULES = "rules:\n  - name: cap-time-entries\n    policy: elapsed_cap\n    params: {max_seconds: 28800}\n"
QUEUE_KEY = "rq:queue:taskwarden-evaluations"
TARGET_RATIO, TARGET_P99_FACTOR = 0.70, 2.0
"""Issue 6: at least 70% of the bare endpoint's throughput, p99 no worse than twice its p99."""
ID_SPACE = 10_000_000
"""Task ids per (round, generator process): ranges never overlap, so a new id must answer ``queued``."""


def event_body(task_id: int, ts: int) -> bytes:
    """The form body Bitrix24 sends for ONTASKUPDATE (same shape as ``tests/helpers.py``)."""
    return urlencode([
        ("event", "ONTASKUPDATE"), ("event_handler_id", "27"), ("data[FIELDS_BEFORE][ID]", task_id),
        ("data[FIELDS_AFTER][ID]", task_id), ("data[IS_ACCESSIBLE_BEFORE]", "undefined"),
        ("data[IS_ACCESSIBLE_AFTER]", "undefined"), ("ts", ts), ("auth[domain]", "bench.bitrix24.com"),
        ("auth[client_endpoint]", "https://bench.bitrix24.com/rest/"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[member_id]", MEMBER_ID),
        ("auth[application_token]", TOKEN)]).encode()


def http_request(task_id: int, ts: int) -> bytes:
    body = event_body(task_id, ts)
    return (b"POST /bitrix24/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@dataclass
class Conn:
    """One keep-alive connection of a generator process and the request it has in flight."""

    sock: socket.socket
    sent_at: float = 0.0
    task_id: int = 0
    is_new: bool = True
    buf: bytes = b""


@dataclass
class Tally:
    """What one generator process saw; merged across processes and rounds."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    unexpected: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    queued_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def merge(self, other: Tally) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.unexpected += other.unexpected
        self.queued_ids += other.queued_ids
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


def _response(buf: bytes) -> tuple[int, bytes, int] | None:
    """``(status, body, bytes used)`` once ``buf`` holds a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buf[:end].lower().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    return int(buf[9:12]), buf[end + 4:end + 4 + length], end + 4 + length


def drive(port: int, conns: int, start: float, warmup: float, duration: float, first_id: int, dup_ratio: float,
          out: Any) -> None:
    """Generator process: ``conns`` connections, each sending its next event as soon as an answer arrives."""
    rng, next_id, ts = random.Random(first_id), first_id, int(time.time())
    sent_ids: list[int] = []
    tally, sel = Tally(), selectors.DefaultSelector()
    measure_from, stop_at = start + warmup, start + warmup + duration

    def send(conn: Conn) -> None:
        nonlocal next_id
        conn.is_new = not sent_ids or rng.random() >= dup_ratio
        if conn.is_new:
            conn.task_id, next_id = next_id, next_id + 1
            sent_ids.append(conn.task_id)
        else:
            conn.task_id = rng.choice(sent_ids)
        conn.buf, conn.sent_at = b"", time.perf_counter()
        conn.sock.sendall(http_request(conn.task_id, ts))

    def connect() -> Conn:
        conn = Conn(socket.create_connection(("127.0.0.1", port)))
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        return conn

    while time.monotonic() < start:
        time.sleep(0.001)
    for conn in [connect() for _ in range(conns)]:
        send(conn)
    in_flight = conns
    while in_flight and time.monotonic() < stop_at + 5:
        for key, _ in sel.select(timeout=0.5):
            conn = key.data
            chunk = conn.sock.recv(65536)
            parsed = _response(conn.buf + chunk) if chunk else None
            if chunk and parsed is None:
                conn.buf += chunk
                continue
            now = time.monotonic()
            measuring = measure_from <= now < stop_at
            if parsed is None:  # the server closed the connection under a request
                tally.errors += 1
                sel.unregister(conn.sock)
                conn.sock.close()
                conn = connect()
            else:
                _record(tally, conn, *parsed[:2], measuring=measuring)
            if now < stop_at:
                send(conn)
            else:
                in_flight -= 1
    out.send(tally)


def _record(tally: Tally, conn: Conn, status: int, body: bytes, *, measuring: bool) -> None:
    answer = json.loads(body).get("status", "?") if status == 200 else str(status)
    if answer == "queued":
        tally.queued_ids.append(conn.task_id)
    if not measuring:
        return
    tally.latencies_ms.append((time.perf_counter() - conn.sent_at) * 1000)
    tally.statuses[answer] = tally.statuses.get(answer, 0) + 1
    if not 200 <= status < 300:
        tally.errors += 1
    elif answer != ("queued" if conn.is_new else "duplicate") and answer != "ok":
        tally.unexpected += 1


def run_load(port: int, args: argparse.Namespace, round_no: int) -> Tally:
    """Run the generator processes against one server for warm-up plus duration; merge what they saw."""
    start = time.monotonic() + 0.5
    pipes, procs = [], []
    for n in range(args.procs):
        mine, theirs = multiprocessing.Pipe(duplex=False)
        first_id = (round_no * args.procs + n) * ID_SPACE + 1
        proc = multiprocessing.Process(target=drive, args=(port, args.connections // args.procs, start, args.warmup,
                                                           args.duration, first_id, args.dup_ratio, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    total = Tally()
    for pipe, proc in zip(pipes, procs, strict=True):
        total.merge(pipe.recv())
        proc.join()
    return total


def start_server(app: str, port: int, env: dict[str, str], cwd: str, log: Any) -> subprocess.Popen[bytes]:
    """gunicorn with the production config; returns once ``/healthz`` answers."""
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"), app]
    proc = subprocess.Popen(cmd, env={**env, "TASKWARDEN_BIND": f"127.0.0.1:{port}"}, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {app} exited at start (see {log.name})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"bench: {app} did not answer /healthz within 30 s")


def check_redis(redis: Redis, queued_ids: list[int]) -> dict[str, Any]:
    """Every ``queued`` answer must have left a pending key and exactly one job for its task in the queue."""
    job_ids = [j.decode() if isinstance(j, bytes) else j for j in redis.lrange(QUEUE_KEY, 0, -1)]
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(f"rq:job:{job_id}", "data")
    job_tasks = [json.loads(zlib.decompress(data))[3]["task_id"] for data in pipe.execute() if data]
    pending = {int(key.rsplit(b":", 1)[1]) for key in redis.scan_iter(match="taskwarden:*:pending:*", count=1000)}
    wanted = set(queued_ids)
    ok = (len(wanted) == len(queued_ids) and sorted(job_tasks) == sorted(wanted) and wanted <= pending)
    return {"accepted_in_redis_ok": ok, "queued_answers": len(queued_ids), "jobs_in_queue": len(job_tasks),
            "pending_keys": len(pending)}


def summary(tally: Tally) -> dict[str, Any]:
    lat = sorted(tally.latencies_ms) or [0.0]
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    return {"events_per_s": round(len(tally.latencies_ms) / tally.seconds, 1), "p50_ms": round(q[49], 2),
            "p99_ms": round(q[98], 2), "errors": tally.errors, "requests": len(tally.latencies_ms)}


def bench_env(redis_url: str, rules_file: Path) -> dict[str, str]:
    """Production defaults, sandbox portal settings, no admin token; run from an empty dir (no ``.env``)."""
    drop = {"TASKWARDEN_ADMIN_TOKEN", "B24_WEBHOOK_URL", "B24_APPLICATION_TOKEN", "B24_MEMBER_ID",
            "TASKWARDEN_DRY_RUN", "LOG_LEVEL", "LOG_FORMAT", "WEB_CONCURRENCY", "WEB_THREADS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "RULES_FILE": str(rules_file),
            "SANDBOX_APPLICATION_TOKEN": TOKEN}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per target and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="alternate intake and bare this many times")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--dup-ratio", type=float, default=0.1, help="share of events for an already-sent task")
    args = parser.parse_args(argv)
    redis = Redis.from_url(args.redis_url)
    redis.flushdb()
    with tempfile.TemporaryDirectory(prefix="taskwarden-bench-") as workdir:
        rules_file = Path(workdir) / "rules.yaml"
        rules_file.write_text(RULES)
        env = bench_env(args.redis_url, rules_file)
        with open(Path(workdir) / "gunicorn.log", "wb") as log:
            ports = {"intake": _free_port(), "bare": _free_port()}
            procs = [start_server("app:app", ports["intake"], env, workdir, log),
                     start_server("bench.bare_app:app", ports["bare"], env, workdir, log)]
            try:
                tallies = _rounds(ports, args)
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(timeout=30)
    result = _report(tallies, check_redis(redis, tallies["intake"].queued_ids), args)
    redis.flushdb()
    return result


def _rounds(ports: dict[str, int], args: argparse.Namespace) -> dict[str, Tally]:
    """Alternate the targets round by round, so that noise from other processes hits both alike."""
    tallies = {name: Tally() for name in ports}
    for round_no in range(args.rounds):
        for name, port in ports.items():
            tallies[name].merge(run_load(port, args, round_no))
            tallies[name].seconds += args.duration
    return tallies


def _report(tallies: dict[str, Tally], redis_check: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    intake, bare = summary(tallies["intake"]), summary(tallies["bare"])
    ratio = intake["events_per_s"] / bare["events_per_s"] if bare["events_per_s"] else 0.0
    p99_factor = intake["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else 0.0
    met = (ratio >= TARGET_RATIO and p99_factor <= TARGET_P99_FACTOR and intake["errors"] == 0
           and redis_check["accepted_in_redis_ok"] and tallies["intake"].unexpected == 0)
    return {"bench": "ingest", **intake, "answers": tallies["intake"].statuses,
            "unexpected_answers": tallies["intake"].unexpected,
            **{f"bare_{k}": v for k, v in bare.items()}, "throughput_ratio": round(ratio, 3),
            "p99_factor": round(p99_factor, 2), **redis_check, "target_met": met,
            "seconds_per_target": args.duration * args.rounds, "connections": args.connections,
            "generator_procs": args.procs, "cpus": os.cpu_count()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
