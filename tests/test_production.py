"""What ships is what is tested: the web, a worker and the scheduler started from a venv holding
``requirements.txt`` alone (what the Docker image installs), with the image's own commands.

The venv is built once per content of ``requirements.txt`` (``scripts/prod_venv.py``); ``make test`` builds it
before the tests and passes its path in ``TASKWARDEN_PROD_VENV``.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from scripts.prod_venv import prod_venv

from .helpers import DEFAULT_RULES, TEST_APP_TOKEN, TEST_MEMBER_ID, TEST_REDIS_URL, TEST_SECRET, poll

ROOT = Path(__file__).resolve().parent.parent
BROKEN_RULES = "rules:\n  - {name: cap, policy: elapsed_cap, params: {max_seconds: -5}}\n"
COMMANDS = {
    "web": ["gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"), "app:create_app()"],
    "worker": ["flask", "--app", "app", "worker"],
    "scheduler": ["flask", "--app", "app", "scheduler"],
}


@pytest.fixture(scope="module")
def venv_bin() -> Path:
    built = os.environ.get("TASKWARDEN_PROD_VENV")
    return (Path(built) if built else prod_venv()) / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def production_env(venv_bin: Path, rules_file: Path, sandbox_url: str, port: int) -> dict[str, str]:
    """Only what a container would have: no dev venv on PATH, no variables of the developer's shell."""
    return {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(ROOT),
            "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": str(rules_file), "SANDBOX_URL": sandbox_url,
            "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN,
            "SANDBOX_MEMBER_ID": TEST_MEMBER_ID, "TASKWARDEN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
            "LOG_FORMAT": "json", "SPOOL_DIR": str(rules_file.parent / "spool")}


def start(name: str, venv_bin: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    argv = [str(venv_bin / COMMANDS[name][0]), *COMMANDS[name][1:]]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as processes:
        yield processes


def stopped(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.mark.slow
def test_event_is_fixed_by_processes_from_requirements_alone(venv_bin: Path, tmp_path: Path, sandbox: Any,
                                                             redis: Redis, stack: ExitStack) -> None:
    """Production web command, a worker and the scheduler: a sandbox edit's event ends in a capped entry."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEFAULT_RULES)
    port = free_port()
    env = production_env(venv_bin, rules, sandbox.base_url, port)
    processes = {name: start(name, venv_bin, env, tmp_path) for name in COMMANDS}
    for process in processes.values():
        stack.callback(stopped, process)

    def web_ready() -> bool:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited: {process.communicate()[1][-2000:]}"
        try:
            return Redis.from_url(TEST_REDIS_URL).exists("rq:workers") == 1 and _answers(port)
        except OSError:
            return False

    poll(web_ready, "the web process and a worker", timeout=60, interval=0.2)
    sandbox.configure(handler_url=f"http://127.0.0.1:{port}/bitrix24/events")
    task_id = sandbox.add_task(TITLE="Quarterly report")
    entry_id = sandbox.add_entry(task_id, 36000, "client call")
    sandbox.update_task(task_id, TITLE="Quarterly report (edited)")
    poll(lambda: sandbox.entry(entry_id)["SECONDS"] == 28800, "the worker to cap the entry", timeout=60,
         interval=0.2)
    assert sandbox.entry(entry_id)["COMMENT_TEXT"] == "client call (capped at 8h)"
    health = [str(venv_bin / "flask"), "--app", "app", "health", "scheduler"]
    poll(lambda: subprocess.run(health, cwd=tmp_path, env=env, capture_output=True).returncode == 0,
         "the scheduler's heartbeat", timeout=30, interval=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_broken_rules_file_stops_each_process_with_one_line(name: str, venv_bin: Path, tmp_path: Path) -> None:
    """gunicorn's master checks the configuration before forking: no worker restarted forever."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(BROKEN_RULES)
    process = start(name, venv_bin, production_env(venv_bin, rules, "http://127.0.0.1:9", free_port()), tmp_path)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        stopped(process)
    assert process.returncode == 3, (out + err)[-2000:]
    errors = [line for line in (out + err).splitlines() if "configuration error" in line]
    assert errors == [f"taskwarden: configuration error: rules file {rules}: rule 'cap': params.max_seconds: "
                      "Input should be greater than 0"]
    assert "Traceback" not in out + err


def _answers(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
    except requests.RequestException:
        return False
