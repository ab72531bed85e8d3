"""What the enforcement and sweep benchmarks share: a sandbox at the standard budget, the service's
settings for it, worker processes, and their resident memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from redis import Redis

from sandbox.config import SandboxConfig
from sandbox.server import RunningSandbox, start_in_thread

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway value for a local simulation
TOKEN = "bench-application-token"  # noqa: S105
RATE, BURST = 2.0, 50
"""The standard Bitrix24 budget: 2 requests/s drained, a burst of 50."""


def start_sandbox(seed: str, **overrides: Any) -> RunningSandbox:
    """A sandbox at the standard budget, seeded; ``overrides`` change its settings (``burst=0``: no budget)."""
    sandbox = start_in_thread(SandboxConfig(secret=SECRET, application_token=TOKEN, rate=RATE, burst=BURST))
    import requests

    requests.post(f"{sandbox.url}/_sandbox/reset", json={"seed": seed, **overrides}, timeout=600).raise_for_status()
    return sandbox


def rules_file(text: str) -> str:
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115 - lives for the run
    handle.write(text)
    handle.close()
    return handle.name


def settings(redis_url: str, rules: str, sandbox: RunningSandbox) -> dict[str, Any]:
    """The service's settings, by field name (create_app) — env() gives the same as variables."""
    return {"redis_url": redis_url, "rules_file": rules, "sandbox_url": sandbox.url, "sandbox_secret": SECRET,
            "sandbox_application_token": TOKEN, "b24_rate_limit": RATE, "b24_rate_burst": BURST,
            "log_level": "WARNING", "spool_dir": tempfile.mkdtemp(prefix="bench-spool-")}


def env(values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **{name.upper(): str(value) for name, value in values.items()}}


def start_workers(count: int, values: dict[str, Any], *, burst: bool = True) -> list[subprocess.Popen[bytes]]:
    """Worker processes; ``burst`` ones exit once the queues are empty (jobs scheduled for later stay)."""
    args = [sys.executable, "-m", "flask", "--app", "app", "worker", *(["--burst"] if burst else [])]
    return [subprocess.Popen(args, cwd=ROOT, env=env(values), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


class MemorySampler:
    """Peak resident memory of worker processes (main process, and its largest work horse)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_worker_kb = 0
        self.peak_horse_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self.pids:
                self.peak_worker_kb = max(self.peak_worker_kb, _rss_kb(pid))
                for child in _children(pid):
                    self.peak_horse_kb = max(self.peak_horse_kb, _rss_kb(child))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def flush_db(url: str) -> None:
    Redis.from_url(url).flushdb()


def wait_all(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))


def stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Stop workers as an orchestrator does (SIGTERM, a warm shutdown) and wait for them: a process's CPU time
    reaches ``RUSAGE_CHILDREN`` only once it was waited for."""
    for process in processes:
        process.terminate()
    wait_all(processes, timeout)


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


def process_cpu(pid: int) -> tuple[float, float]:
    """A running process's own CPU seconds and its waited-for children's (``/proc/<pid>/stat``: utime + stime,
    cutime + cstime). For an RQ worker the children are its work horses, each waited for when its job ends."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick
