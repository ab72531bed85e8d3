"""The newcomer's path: ``make demo`` sets up, runs the loop once against the sandbox, and exits 0."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from redis import Redis

from .helpers import TEST_REDIS_URL

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_make_demo(redis: Redis) -> None:
    """Real processes (sandbox, gunicorn, RQ worker): the demo entry is capped and the audit shows it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "SANDBOX_", "TASKWARDEN_"))}
    env["REDIS_URL"] = TEST_REDIS_URL
    done = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "entry 1 is now 28800 s, comment 'client call (capped at 8h)'" in output
    assert "outcome=changed cause=event" in output
    assert "demo passed" in output


@pytest.mark.slow
def test_make_demo_in_application_mode(redis: Redis) -> None:
    """`make demo APP=1`: two sandbox portals install Taskwarden, and each one's long entry is capped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "SANDBOX_", "TASKWARDEN_"))}
    env["REDIS_URL"] = TEST_REDIS_URL
    done = subprocess.run(["make", "--no-print-directory", "demo", "APP=1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for name in ("alpha", "beta"):
        assert f"portal {name} installed the application: HTTP 200" in output
        assert f"{name}: entry 1 is now 28800 s, comment 'client call (capped at 8h)'" in output
    assert "demo passed" in output
