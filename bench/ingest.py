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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

import queueing
from bench.common import start_server

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-application-token-0123456789"  # noqa: S105 - a throwaway value for the local run
MEMBER_ID = "bench0000000000000000000000000000"
RULES = "rules:\n  - name: cap-time-entries\n    policy: elapsed_cap\n    params: {max_seconds: 28800}\n"
QUEUE_KEY = f"rq:queue:{queueing.EVALUATION_QUEUE}"
TARGET_RATIO, TARGET_P99_FACTOR = 0.70, 2.0
"""At least 70% of the bare endpoint's throughput, p99 no worse than twice its p99."""
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
    answered: int = 0
    """Every answer, warm-up included: what the CPU figures are divided by."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds used while this target was driven: server processes, Redis, load generators."""

    def merge(self, other: Tally) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors
        self.unexpected += other.unexpected
        self.queued_ids += other.queued_ids
        self.answered += other.answered
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        for part, seconds in other.cpu.items():
            self.cpu[part] = self.cpu.get(part, 0.0) + seconds


def _response(buf: bytes) -> tuple[int, bytes] | None:
    """``(status, body)`` once ``buf`` holds a whole response (gunicorn sends Content-Length), else None."""
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
    return int(buf[9:12]), buf[end + 4:end + 4 + length]


class Generator:
    """One load-generator process: keep-alive connections, each sending its next event on each answer.

    A new task id must be answered ``queued``; an event for a task already answered must be answered
    ``duplicate`` (no worker runs, so its evaluation still waits). Anything else is counted as unexpected.
    """

    def __init__(self, port: int, first_id: int, dup_ratio: float, check_answers: bool) -> None:
        self.port, self.next_id, self.dup_ratio, self.check = port, first_id, dup_ratio, check_answers
        self.rng, self.ts = random.Random(first_id), int(time.time())
        self.answered_ids: list[int] = []
        self.window = (0.0, 0.0)
        self.tally, self.selector = Tally(), selectors.DefaultSelector()

    def run(self, conns: int, start: float, warmup: float, duration: float) -> Tally:
        self.window = (start + warmup, start + warmup + duration)
        stop_at = self.window[1]
        while time.monotonic() < start:
            time.sleep(0.001)
        for _ in range(conns):
            self.send(self.connect())
        in_flight = conns
        while in_flight and time.monotonic() < stop_at + 5:
            for key, _ in self.selector.select(timeout=0.5):
                conn = self.receive(key.data)
                if conn is None:
                    continue
                if time.monotonic() < stop_at:
                    self.send(conn)
                else:
                    in_flight -= 1
        times = os.times()
        self.tally.cpu["generator"] = times.user + times.system
        return self.tally

    def connect(self) -> Conn:
        conn = Conn(socket.create_connection(("127.0.0.1", self.port)))
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        return conn

    def send(self, conn: Conn) -> None:
        conn.is_new = not self.answered_ids or self.rng.random() >= self.dup_ratio
        if conn.is_new:
            conn.task_id, self.next_id = self.next_id, self.next_id + 1
        else:
            conn.task_id = self.rng.choice(self.answered_ids)
        conn.buf, conn.sent_at = b"", time.perf_counter()
        conn.sock.sendall(http_request(conn.task_id, self.ts))

    def receive(self, conn: Conn) -> Conn | None:
        """Read what arrived; the connection to send on once an answer is complete (a new one if it closed)."""
        chunk = conn.sock.recv(65536)
        if not chunk:  # the server closed the connection under a request
            self.tally.errors += 1
            self.selector.unregister(conn.sock)
            conn.sock.close()
            return self.connect()
        conn.buf += chunk
        parsed = _response(conn.buf)
        if parsed is not None:
            self.record(conn, *parsed, measuring=self.window[0] <= time.monotonic() < self.window[1])
            return conn
        return None

    def record(self, conn: Conn, status: int, body: bytes, *, measuring: bool) -> None:
        answer = json.loads(body).get("status", "?") if status == 200 else str(status)
        tally = self.tally
        tally.answered += 1
        if answer == "queued":
            tally.queued_ids.append(conn.task_id)
        if conn.is_new:
            self.answered_ids.append(conn.task_id)
        if not measuring:
            return
        tally.latencies_ms.append((time.perf_counter() - conn.sent_at) * 1000)
        tally.statuses[answer] = tally.statuses.get(answer, 0) + 1
        if not 200 <= status < 300:
            tally.errors += 1
        elif self.check and answer != ("queued" if conn.is_new else "duplicate"):
            tally.unexpected += 1


def drive(port: int, conns: int, start: float, warmup: float, duration: float, first_id: int, dup_ratio: float,
          check_answers: bool, out: Any) -> None:
    """Entry point of a generator process: run, then send the tally back to the parent."""
    out.send(Generator(port, first_id, dup_ratio, check_answers).run(conns, start, warmup, duration))


def run_load(port: int, server_pid: int, redis: Redis, args: argparse.Namespace, round_no: int,
             check: bool) -> Tally:
    """Run the generator processes against one server for warm-up plus duration; merge what they saw."""
    start = time.monotonic() + 0.5
    server_cpu, redis_cpu = process_tree_cpu(server_pid), _redis_cpu(redis)
    pipes, procs = [], []
    for n in range(args.procs):
        mine, theirs = multiprocessing.Pipe(duplex=False)
        first_id = (round_no * args.procs + n) * ID_SPACE + 1
        proc = multiprocessing.Process(target=drive, args=(port, args.connections // args.procs, start, args.warmup,
                                                           args.duration, first_id, args.dup_ratio, check, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    total = Tally()
    for pipe, proc in zip(pipes, procs, strict=True):
        total.merge(pipe.recv())
        proc.join()
    total.cpu["server"] = process_tree_cpu(server_pid) - server_cpu
    total.cpu["redis"] = _redis_cpu(redis) - redis_cpu
    return total


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children, from ``/proc`` (Linux only; else 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_tree_cpu(int(child)) for child in children)


def _redis_cpu(redis: Redis) -> float:
    """The Redis server's CPU seconds (all its clients: other users of the server show up here too)."""
    info = redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def check_redis(redis: Redis, queued_ids: list[int]) -> dict[str, Any]:
    """Every ``queued`` answer must have left a pending key and exactly one job for its task in the queue."""
    job_ids = [j.decode() if isinstance(j, bytes) else j for j in redis.lrange(QUEUE_KEY, 0, -1)]
    jobs = Job.fetch_many(job_ids, connection=redis, serializer=JSONSerializer)  # read as a worker reads them
    job_tasks = [job.kwargs["task_id"] for job in jobs if job is not None]
    pending = {int(key.rsplit(b":", 1)[1]) for key in redis.scan_iter(match="taskwarden:*:pending:*", count=1000)}
    wanted = set(queued_ids)
    ok = (len(wanted) == len(queued_ids) and sorted(job_tasks) == sorted(wanted) and wanted <= pending)
    return {"accepted_in_redis_ok": ok, "queued_answers": len(queued_ids), "jobs_in_queue": len(job_tasks),
            "pending_keys": len(pending)}


def summary(tally: Tally) -> dict[str, Any]:
    """Throughput and latency of the measured window; CPU per answer over the whole run (µs)."""
    lat = sorted(tally.latencies_ms) or [0.0]
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    cpu = {f"cpu_us_{part}": round(seconds / max(tally.answered, 1) * 1e6) for part, seconds in tally.cpu.items()}
    return {"events_per_s": round(len(tally.latencies_ms) / tally.seconds, 1), "p50_ms": round(q[49], 2),
            "p99_ms": round(q[98], 2), "errors": tally.errors, "requests": len(tally.latencies_ms), **cpu}


def bench_env(redis_url: str, rules_file: Path) -> dict[str, str]:
    """Production defaults, sandbox portal settings, no admin token; run from an empty dir (no ``.env``)."""
    drop = {"TASKWARDEN_ADMIN_TOKEN", "B24_WEBHOOK_URL", "B24_APPLICATION_TOKEN", "B24_MEMBER_ID",
            "TASKWARDEN_DRY_RUN", "LOG_LEVEL", "LOG_FORMAT", "WEB_CONCURRENCY", "WEB_THREADS",
            "WEB_WORKER_CLASS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "RULES_FILE": str(rules_file),
            "SANDBOX_APPLICATION_TOKEN": TOKEN}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per target and round")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=10, help="alternate intake and bare this many times")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--dup-ratio", type=float, default=0.1, help="share of events for an already-sent task")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for both servers, for experiments (e.g. LOG_LEVEL=WARNING)")
    args = parser.parse_args(argv)
    redis = Redis.from_url(args.redis_url)
    redis.flushdb()
    with tempfile.TemporaryDirectory(prefix="taskwarden-bench-") as workdir:
        rules_file = Path(workdir) / "rules.yaml"
        rules_file.write_text(RULES)
        env = bench_env(args.redis_url, rules_file) | dict(item.split("=", 1) for item in args.env)
        with open(Path(workdir) / "gunicorn.log", "wb") as log:
            servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
            try:
                for name, app in (("intake", "app:create_app()"), ("bare", "bench.bare_app:app")):
                    port = _free_port()
                    servers[name] = (start_server(app, port, env, workdir, log), port)
                tallies, ratios = _rounds(servers, redis, args)
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(timeout=30)
    result = _report(tallies, ratios, check_redis(redis, tallies["intake"].queued_ids), args)
    redis.flushdb()
    return result


def _rounds(servers: dict[str, tuple[subprocess.Popen[bytes], int]], redis: Redis,
            args: argparse.Namespace) -> tuple[dict[str, Tally], list[float]]:
    """Alternate the targets in short rounds, so that noise from other processes hits both alike.

    Returns the merged tallies and each round's throughput ratio (their spread shows the noise).
    """
    tallies = {name: Tally() for name in servers}
    ratios = []
    for round_no in range(args.rounds):
        rates = {}
        for name, (proc, port) in servers.items():
            tally = run_load(port, proc.pid, redis, args, round_no, check=name == "intake")
            rates[name] = len(tally.latencies_ms) / args.duration
            tallies[name].merge(tally)
            tallies[name].seconds += args.duration
        ratios.append(round(rates["intake"] / rates["bare"], 3) if rates["bare"] else 0.0)
    return tallies, ratios


def _report(tallies: dict[str, Tally], ratios: list[float], redis_check: dict[str, Any],
            args: argparse.Namespace) -> dict[str, Any]:
    """The one JSON line. ``cpu_ratio`` (bare's CPU per event over intake's, all processes) estimates the
    throughput ratio on a CPU-bound machine, and moves less than throughput when others share the CPUs."""
    intake, bare = summary(tallies["intake"]), summary(tallies["bare"])
    ratio = intake["events_per_s"] / bare["events_per_s"] if bare["events_per_s"] else 0.0
    cpu = {name: sum(v for k, v in figures.items() if k.startswith("cpu_us_")) for name, figures in
           (("intake", intake), ("bare", bare))}
    p99_factor = intake["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else 0.0
    met = (ratio >= TARGET_RATIO and p99_factor <= TARGET_P99_FACTOR and intake["errors"] == 0
           and redis_check["accepted_in_redis_ok"] and tallies["intake"].unexpected == 0)
    return {"bench": "ingest", **intake, "answers": tallies["intake"].statuses,
            "unexpected_answers": tallies["intake"].unexpected,
            **{f"bare_{k}": v for k, v in bare.items()}, "throughput_ratio": round(ratio, 3),
            "round_ratios": ratios, "cpu_ratio": round(cpu["bare"] / cpu["intake"], 3) if cpu["intake"] else 0.0,
            "p99_factor": round(p99_factor, 2), **redis_check, "target_met": met,
            "seconds_per_target": args.duration * args.rounds, "connections": args.connections,
            "generator_procs": args.procs, "cpus": os.cpu_count(), **({"env": args.env} if args.env else {})}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
