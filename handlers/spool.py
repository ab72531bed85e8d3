"""The intake spool: verified events kept on disk while Redis is unreachable (SPEC section 3), or while
the portal has as many tasks waiting as ``TASKWARDEN_MAX_WAITING`` allows.

Each process appends to its own JSON-lines file (``events-{host}-{pid}.jsonl``), flushed and fsynced
before intake answers ``202 spooled``. When Redis answers again, a background thread drains it: each
line is coalesced exactly as a fresh event would be, and marked in Redis so that a drain interrupted
and run again does not queue it twice. A line that cannot be read is moved to ``rejected-*.jsonl``
and reported, never dropped silently. Files left by a process that died are adopted at start, and so
are stale files of another host name (a recreated container sharing the spool volume).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError

from handlers.coalesce import NotReplicated
from handlers.enqueue_script import QueueFull

log = structlog.get_logger(__name__)

DRAIN_POLL_SECONDS = 1.0
STALE_SECONDS = 120
"""A file of another host untouched this long is adopted: a recreated container gets a new hostname."""
MARK_TTL_SECONDS = 86400
FIELDS = ("event_name", "task_id", "event_id")
OPTIONAL_FIELDS = ("portal_id", "token_sha256")
"""The installed portal an event names, and its token's digest when it could not be checked before spooling."""


@dataclass
class DrainResult:
    queued: int = 0
    duplicate: int = 0
    already_done: int = 0
    rejected: int = 0
    refused: int = 0
    """Records whose portal or token did not check out once Redis answered (application mode)."""
    unreplicated: int = 0
    """Records queued, but on too few replicas (``TASKWARDEN_REDIS_MIN_REPLICAS``): their lines stay for the
    next attempt, where they are accepted (``handlers.coalesce``)."""
    complete: bool = True


Handle = Callable[[dict[str, Any]], str]


class Spool:
    def __init__(self, directory: str | Path, marks_key: Callable[[str], str]) -> None:
        self.directory = Path(directory)
        self._host = socket.gethostname().replace(".", "_")
        self._marks_key = marks_key
        self._lock = threading.Lock()
        self._drainer: threading.Thread | None = None

    @property
    def path(self) -> Path:
        # By pid at call time: a forked gunicorn worker must not share its parent's file.
        return self.directory / f"events-{self._host}-{os.getpid()}.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        """Write one event durably (flush + fsync) before intake says it is safe."""
        line = json.dumps({key: record[key] for key in (*FIELDS, *OPTIONAL_FIELDS) if key in record},
                          separators=(",", ":")) + "\n"
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def pending_files(self) -> list[Path]:
        """Spool files of this process and of dead processes on this host, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("events-*.jsonl*"):
            try:
                if self._ours_or_orphaned(path):
                    found.append((path.stat().st_mtime, path))
            except FileNotFoundError:  # drained and removed by the drainer since the listing
                continue
        return [path for _mtime, path in sorted(found)]

    def drain(self, redis: Redis, handle: Handle) -> DrainResult:
        """Queue every spooled event once; stops (keeping the rest) if Redis fails again."""
        result = DrainResult()
        for path in self.pending_files():
            claimed = self._claim(path)
            if claimed is None:
                continue
            unreplicated = result.unreplicated
            try:
                self._drain_file(redis, claimed, handle, result)
            except (RedisError, QueueFull) as stopped:  # the rest waits on disk for the next attempt
                result.complete = False
                log.warning("spool.drain_interrupted", file=claimed.name, reason=type(stopped).__name__)
                return result
            if result.unreplicated > unreplicated:
                result.complete = False  # the file stays until its every line is on a replica or accepted
                continue
            claimed.unlink(missing_ok=True)
        if result.queued or result.duplicate or result.rejected or result.unreplicated:
            log.info("spool.drained", **result.__dict__)
        return result

    def start_drainer(self, redis: Redis, handle: Handle) -> None:
        """Drain in the background once Redis answers; one thread per process, gone when done."""
        with self._lock:
            if self._drainer is not None and self._drainer.is_alive():
                return
            self._drainer = threading.Thread(target=self._drain_when_ready, args=(redis, handle),
                                             name="spool-drainer", daemon=True)
            self._drainer.start()

    def _drain_when_ready(self, redis: Redis, handle: Handle) -> None:
        stop = threading.Event()
        while not stop.wait(DRAIN_POLL_SECONDS):
            try:
                redis.ping()
            except RedisError:
                continue
            if self.drain(redis, handle).complete and not self.pending_files():
                return

    def _drain_file(self, redis: Redis, path: Path, handle: Handle, result: DrainResult) -> None:
        # Read until the file stops growing: a writer that opened it just before we claimed it may
        # still append one line after our first read.
        done = 0
        while True:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            if len(lines) == done:
                return
            self._drain_lines(redis, path, lines[done:], done, handle, result)
            done = len(lines)

    def _drain_lines(self, redis: Redis, path: Path, lines: list[str], skipped: int, handle: Handle,
                     result: DrainResult) -> None:
        for number, line in enumerate(lines, skipped + 1):
            record = _parse(line)
            if record is None:
                self._reject(path, number, line)
                result.rejected += 1
                continue
            mark = self._marks_key(hashlib.sha1(f"{path.name}:{number}:{line}".encode(),
                                                usedforsecurity=False).hexdigest())
            if redis.exists(mark):
                result.already_done += 1
                continue
            try:
                status = handle(record)
            except NotReplicated:  # not one line per attempt: the rest of the file goes on
                result.unreplicated += 1
                continue
            redis.set(mark, 1, ex=MARK_TTL_SECONDS)
            setattr(result, status, getattr(result, status) + 1)

    def _claim(self, path: Path) -> Path | None:
        """Rename a file before reading it, so appends that follow go to a fresh file."""
        if ".draining" in path.name:
            return path
        target = path.with_name(f"{path.name}.draining-{uuid.uuid4().hex[:8]}")
        with self._lock:
            try:
                path.rename(target)
            except FileNotFoundError:
                return None
        return target

    def _reject(self, path: Path, number: int, line: str) -> None:
        rejected = self.directory / f"rejected-{self._host}-{os.getpid()}.jsonl"
        with rejected.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"file": path.name, "line": number, "text": line[:2000]}) + "\n")
        log.error("spool.rejected_line", file=path.name, line=number, kept_in=rejected.name)

    def _ours_or_orphaned(self, path: Path) -> bool:
        parts = path.name.split(".")[0].split("-")  # events-{host}-{pid}
        if len(parts) < 3 or not parts[-1].isdigit():
            return False
        if "-".join(parts[1:-1]) != self._host:
            return _age(path) > STALE_SECONDS
        pid = int(parts[-1])
        return pid == os.getpid() or not _alive(pid)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(key in record for key in FIELDS):
        return None
    if not isinstance(record["task_id"], int) or not isinstance(record["event_name"], str):
        return None
    return record


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
