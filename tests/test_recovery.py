"""A killed worker loses no job: real worker processes, SIGKILL mid-evaluation, the job rerun to completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import keys
from queueing import enqueue_evaluation
from redis_scripts import script
from workers.passes import _CLAIM, take_own_task

from .helpers import TEST_APP_TOKEN, TEST_REDIS_URL, TEST_SECRET, poll, run_worker, work_requests

ROOT = Path(__file__).parent.parent


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the work horse and RQ's scheduler run as children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def start_worker(app: Flask, sandbox_url: str) -> subprocess.Popen[bytes]:
    settings = app.extensions["taskwarden"].settings
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "RULES_FILE": settings.rules_file, "SANDBOX_URL": sandbox_url,
           "SANDBOX_SECRET": TEST_SECRET, "SANDBOX_APPLICATION_TOKEN": TEST_APP_TOKEN, "LOG_FORMAT": "json",
           "SPOOL_DIR": settings.spool_dir}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_sigkill_mid_evaluation_is_rerun(app: Flask, sandbox: Any, sandbox_server: Any) -> None:
    """Worker, work horse and scheduler killed with SIGKILL while the job reads; another worker reruns it.

    The rerun is RQ's retry of the abandoned job (one retry used), and it finishes the evaluation. The 90 s
    is only the deadline of the poll for that state; how soon a killed job is rerun is not asserted.
    """
    rt = app.extensions["taskwarden"]
    task_id = sandbox.add_task(TITLE="t")
    entry_id = sandbox.add_entry(task_id, 40000, "x")
    sandbox.fault("batch", status=200, delay=60, times=1)  # the first evaluation hangs in its read
    job = enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    retries = job.retries_left
    assert retries  # the job may be retried, which is what reruns it
    first = start_worker(app, sandbox_server.url)
    second = None
    try:
        poll(lambda: job.id in rt.queue().started_job_registry.get_job_ids(), "the job to start", timeout=30)
        for pid in [*descendants(first.pid), first.pid]:
            os.kill(pid, signal.SIGKILL)
        first.wait(timeout=10)
        sandbox.clear_faults()  # whether or not the killed read got to the portal, the rerun's is not slowed
        second = start_worker(app, sandbox_server.url)
        poll(lambda: job.get_status(refresh=True) == "finished", "the rerun to finish the job", timeout=90,
             interval=0.5)
        job.refresh()
        result = job.return_value()
        assert result is not None and result["status"] == "done"
        assert job.retries_left == retries - 1  # rerun once, as a retry of the abandoned job
        assert sandbox.entry(entry_id)["SECONDS"] == 28800
        assert job.id not in rt.queue().failed_job_registry.get_job_ids()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                for pid in [*descendants(process.pid), process.pid]:
                    os.kill(pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_rerun_after_a_kill_right_after_taking_the_task(app: Flask, sandbox: Any) -> None:
    """Killed just after its task left the waiting hash, before claiming others: the rerun still evaluates it.

    The task leaves the waiting hash and enters the job's inflight set in one step, so there is no moment
    at which a kill leaves a rerun that finds it in neither and ends as "coalesced".
    """
    rt = app.extensions["taskwarden"]
    task_id = sandbox.add_task(TITLE="t")
    entry_id = sandbox.add_entry(task_id, 40000, "x")
    job = enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    assert take_own_task(rt, rt.portal.id, task_id, keys.inflight(rt.portal.id, job.id))  # where the kill lands
    assert not rt.redis.hexists(keys.waiting(rt.portal.id), str(task_id))
    run_worker(app)  # RQ runs the same job again
    result = job.return_value()
    assert job.get_status(refresh=True) == "finished" and result is not None and result["status"] == "done"
    assert sandbox.entry(entry_id)["SECONDS"] == 28800
    assert not rt.redis.exists(keys.inflight(rt.portal.id, job.id))


def test_rerun_after_a_kill_right_after_claiming_others(app: Flask, sandbox: Any) -> None:
    """Killed just after claiming another waiting task, before taking its job off the queue: nothing is lost.

    The claim moves the other task from the waiting hash to this job's inflight set in one step; the rerun
    evaluates both, and the other task's own job, still queued, finds its task taken and ends as coalesced.
    """
    rt = app.extensions["taskwarden"]
    tasks = [sandbox.add_task(TITLE=f"t{n}") for n in range(2)]
    entries = [sandbox.add_entry(task_id, 40000, "x") for task_id in tasks]
    first, other = (enqueue_evaluation(rt.queue(), rt.portal.id, task_id) for task_id in tasks)
    inflight = keys.inflight(rt.portal.id, first.id)
    assert take_own_task(rt, rt.portal.id, tasks[0], inflight)
    script(rt.redis, _CLAIM)(keys=[keys.waiting(rt.portal.id), inflight], args=[10, 60])  # where the kill lands
    assert rt.redis.hlen(keys.waiting(rt.portal.id)) == 0
    run_worker(app)  # the first job runs again, and the other task's job runs too
    assert [sandbox.entry(entry_id)["SECONDS"] for entry_id in entries] == [28800, 28800]
    outcomes = {job.id: (job.return_value() or {}).get("status") for job in (first, other)}
    assert outcomes == {first.id: "done", other.id: "coalesced"}


def test_failed_pass_loses_no_task(app: Flask, sandbox: Any) -> None:
    """A pass whose read fails past the client's retries: its own task and those it took along are all
    evaluated afterwards (by RQ's retry and by jobs of their own), and no note is left behind."""
    rt = app.extensions["taskwarden"]
    tasks = [sandbox.add_task(TITLE=f"t{n}") for n in range(3)]
    entries = [sandbox.add_entry(task_id, 40000, "x") for task_id in tasks]
    for task_id in tasks:
        enqueue_evaluation(rt.queue(), rt.portal.id, task_id)
    sandbox.fault("batch", status=500, error="INTERNAL_SERVER_ERROR", times=5)  # the client tries 5 times
    run_worker(app)
    assert [r["status"] for r in work_requests(sandbox)][:5] == [500] * 5  # the first pass did fail
    assert [sandbox.entry(entry_id)["SECONDS"] for entry_id in entries] == [28800] * 3
    assert not list(rt.redis.scan_iter(match=keys.inflight(rt.portal.id, "*")))
    assert len(rt.queue().failed_job_registry) == 0
