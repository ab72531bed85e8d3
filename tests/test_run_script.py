"""``make run``'s first minute: a mistake is named at once, in one line, before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from .helpers import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "SANDBOX_", "TASKWARDEN_"))}
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = {"PORT": str(a.getsockname()[1]), "SANDBOX_PORT": str(b.getsockname()[1])}
    return subprocess.run([sys.executable, "scripts/run.py", "run"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=base | {"REDIS_URL": TEST_REDIS_URL} | ports | env)


def test_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_script(tmp_path, PORT=str(port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"[taskwarden] port {port} is busy: stop what listens there or set PORT=<another port>"]
    assert "starting" not in done.stdout


def test_broken_rules_file_is_named(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: cap, policy: elapsed_cap, params: {max_seconds: -5}}\n")
    done = run_script(tmp_path, RULES_FILE=str(rules))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"[taskwarden] taskwarden: configuration error: rules file {rules}: rule 'cap': params.max_seconds: "
        "Input should be greater than 0"]
    assert "starting" not in done.stdout
