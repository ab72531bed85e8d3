"""Worker-side commands: ``worker`` and ``audit``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

import audit


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker_command(burst: bool) -> None:
    """Run an RQ worker for evaluations and sweeps."""
    from workers.worker import run_worker

    run_worker(current_app.extensions["taskwarden"], burst=burst)


@click.command("audit")
@with_appcontext
@click.option("--task", type=int, help="Only this task.")
@click.option("--rule", help="Only this rule.")
@click.option("--outcome", type=click.Choice(audit.OUTCOMES), help="Only this outcome.")
@click.option("--limit", type=int, default=50, show_default=True)
def audit_command(task: int | None, rule: str | None, outcome: str | None, limit: int) -> None:
    """Print the latest decisions, newest first."""
    rt = current_app.extensions["taskwarden"]
    rows = audit.query(rt.redis, rt.portal.id, task=task, rule=rule, outcome=outcome, limit=limit)
    click.echo(format_table(rows))


def format_table(rows: list[dict]) -> str:
    columns = ("time", "rule", "task_id", "entity", "before", "after", "outcome", "cause")
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) if rows else "no decisions recorded"


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(audit_command)
