"""Commands that run a process: ``worker``, ``scheduler``, and ``health`` for their container checks."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from cli.errors import operator_errors
from runtime import Runtime
from workers.liveness import scheduler_alive, worker_alive
from workers.scheduler import run_scheduler
from workers.worker import PatientRetry, run_worker


def _runtime() -> Runtime:
    return current_app.extensions["taskwarden"]


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@operator_errors
def worker_command(burst: bool) -> None:
    """Run an RQ worker for evaluations and sweeps."""
    run_worker(_runtime(), burst=burst)


@click.command("scheduler")
@with_appcontext
@operator_errors
def scheduler_command() -> None:
    """Enqueue sweeps on the rules file's cron schedules (any number of these may run)."""
    rt = _runtime()
    rt.redis.set_retry(PatientRetry())  # this process's Redis calls wait out an outage, however long it lasts
    run_scheduler(rt)


@click.command("health")
@click.argument("process", type=click.Choice(("worker", "scheduler")))
@with_appcontext
@operator_errors
def health_command(process: str) -> None:
    """Exit 0 when a PROCESS of this host is alive (container health checks), else 1."""
    rt = _runtime()
    alive = worker_alive(rt) if process == "worker" else scheduler_alive(rt)
    click.echo(f"{process}: {'alive' if alive else 'not alive'}")
    raise SystemExit(0 if alive else 1)


COMMANDS = (worker_command, scheduler_command, health_command)
