"""Commands for the person operating Taskwarden: ``audit``, ``report``, ``status``, ``failed``, ``reconcile``."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

import audit
import metrics
import report
from cli.errors import operator_errors
from config.rules import SWEEP_KINDS
from logging_setup import log_to_stderr
from runtime import Runtime
from workers.failed import failed_jobs, requeue_failed
from workers.status import collect_status, render
from workers.sweeps import SweepBusy, SweepStats, run_sweep


def _runtime() -> Runtime:
    """The app's runtime; log lines go to stderr so that stdout holds the command's output alone."""
    log_to_stderr()
    return current_app.extensions["taskwarden"]


def _one_portal(portal: str | None) -> Runtime:
    """The runtime seen from one portal: ``--portal``, required in application mode (there is no default)."""
    rt = _runtime()
    if not rt.settings.app_mode:
        return rt
    if not portal:
        raise click.UsageError("give --portal MEMBER_ID in application mode (`flask --app app portals` lists them)")
    return rt.for_portal(portal)


portal_option = click.option("--portal", help="Application mode: only this portal (member_id).")


@click.command("audit")
@with_appcontext
@click.option("--task", type=int, help="Only this task.")
@click.option("--rule", help="Only this rule.")
@click.option("--outcome", type=click.Choice(audit.OUTCOMES), help="Only this outcome.")
@click.option("--limit", type=int, default=50, show_default=True)
@portal_option
@operator_errors
def audit_command(task: int | None, rule: str | None, outcome: str | None, limit: int, portal: str | None) -> None:
    """Print the latest decisions, newest first (of every portal, unless --portal)."""
    rt = _runtime()
    rows = [{**row, "portal": portal_id} for portal_id in rt.portal_ids(portal)
            for row in audit.query(rt.redis, portal_id, task=task, rule=rule, outcome=outcome, limit=limit)]
    rows = sorted(rows, key=lambda row: row["time"], reverse=True)[:limit]
    columns = (("portal",) if rt.settings.app_mode else ()) + DECISION_COLUMNS
    click.echo(format_table(rows, columns=columns))


@click.command("report")
@click.option("--limit", type=int, default=20, show_default=True, help="Tasks listed per rule.")
@portal_option
@with_appcontext
@operator_errors
def report_command(limit: int, portal: str | None) -> None:
    """Print, per rule, the tasks currently out of compliance (of every portal, unless --portal)."""
    rt = _runtime()
    local = () if rt.settings.app_mode else rt.rules.rules
    items = [(portal_id, item) for portal_id in rt.portal_ids(portal)
             for item in report.build(rt.redis, portal_id, limit=limit, local_rules=local)["rules"]]
    for portal_id, item in items:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(item["by_outcome"].items())) or "nothing open"
        stale = "" if item["in_local_rules"] else " [not in the local rules file: as the workers ran it]"
        where = f"portal {portal_id}: " if rt.settings.app_mode else ""
        click.echo(f"{where}{item['rule']} ({item['policy']}, {item['mode']}): {item['open_tasks']} task(s) open; "
                   f"{counts}{stale}")
        rows = [d for task in item["tasks"] for d in task["decisions"]]
        if rows:
            click.echo(format_table(rows, columns=("task_id", "entity", "before", "after", "outcome", "time",
                                                   "detail")))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@portal_option
@with_appcontext
@operator_errors
def status_command(as_json: bool, portal: str | None) -> None:
    """One screen: queues, workers, budget, sweeps, failed jobs, recent decisions."""
    status = collect_status(_one_portal(portal))
    click.echo(json.dumps(status, indent=2, default=str) if as_json else render(status))


@click.command("failed")
@click.option("--requeue", is_flag=True, help="Put the failed jobs back on their queues.")
@click.option("--job", "job_ids", multiple=True, help="Only this job id (repeatable).")
@with_appcontext
@operator_errors
def failed_command(requeue: bool, job_ids: tuple[str, ...]) -> None:
    """List jobs that failed for good (RQ's failed registry), with a readable reason; optionally requeue."""
    rt = _runtime()
    if requeue:
        done = requeue_failed(rt, list(job_ids) or None)
        click.echo(f"requeued {len(done)} job(s)" + (f": {', '.join(done)}" if done else ""))
        return
    jobs = [job for job in failed_jobs(rt) if not job_ids or job.id in job_ids]
    for job in jobs:
        click.echo(f"{job.id}  {job.queue}  failed {job.ended_at}\n  {job.description}\n  reason: {job.reason}")
    if not jobs:
        click.echo("no failed jobs")


@click.command("reconcile")
@click.option("--sweep", "kind", type=click.Choice(SWEEP_KINDS), default="full", show_default=True)
@click.option("--rule", "rule_name", help="Only this rule.")
@click.option("--dry-run", is_flag=True, help="Change nothing: would_change decisions, cursor left in place.")
@portal_option
@with_appcontext
@operator_errors
def reconcile_command(kind: str, rule_name: str | None, dry_run: bool, portal: str | None) -> None:
    """Run a sweep now, in the foreground, with progress and a summary."""
    rt = _one_portal(portal)
    if rule_name and rule_name not in {rule.name for rule in rt.rules.rules}:
        raise click.BadParameter(f"no rule named {rule_name!r}", param_hint="--rule")
    tty = sys.stderr.isatty()

    def show(stats: SweepStats) -> None:
        line = (f"{stats.kind}: {stats.tasks_seen} tasks, {stats.entries_seen} entries seen, "
                f"{stats.changed} changed, {stats.would_change} would change, {stats.requests} requests")
        if tty:
            click.echo(f"\r{line}", nl=False, err=True)

    try:
        stats = run_sweep(rt, kind, rule_name=rule_name, dry_run=dry_run, progress=show)
    except SweepBusy:
        raise click.ClickException(f"a {kind} sweep is already running") from None
    finally:
        metrics.flush(rt.redis)  # no flusher thread in a command: its counts are written once, here
    if tty:
        click.echo(err=True)
    click.echo(f"sweep {stats.kind}{' (dry run)' if stats.dry_run else ''} done in {stats.seconds}s: "
               f"{stats.tasks_seen} tasks and {stats.entries_seen} entries seen, {stats.evaluated} evaluated, "
               f"{stats.changed} changed, {stats.would_change} would change, {stats.problems} violations or errors, "
               f"{stats.missed_by_events} missed by events, {stats.skipped_busy} busy, {stats.requests} requests")


DECISION_COLUMNS = ("time", "rule", "task_id", "entity", "before", "after", "outcome", "cause", "detail")


def format_table(rows: list[dict], columns: tuple[str, ...] = DECISION_COLUMNS) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) if rows else "no decisions recorded"


def _cell(value: object) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


COMMANDS = (audit_command, report_command, status_command, failed_command, reconcile_command)
