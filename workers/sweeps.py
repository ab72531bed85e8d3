"""Sweeps (SPEC section 6): find what events missed or cannot carry, and evaluate it.

- ``entries``: time entries created since the last entry ID seen (Bitrix24 raises no event for them);
  the tasks owning an entry that matters (over a cap) are evaluated for the rules that read entries.
- ``tasks``: tasks changed since the cursor, evaluated for every rule with ``sweep: true``.
- ``full``: every task with all its time entries, plus the field-definition check.

Collections are read by ID windows, 2,500 IDs per batch request (``bitrix.scan``). A cursor moves only
when its sweep completes, so an interrupted sweep is simply run again (evaluations are idempotent).
Tasks being evaluated by an event job at that moment are skipped: that job covers them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import structlog

import keys
from audit import Decision
from bitrix import elapsed, scan, tasks
from bitrix.elapsed import TimeEntry
from bitrix.tasks import Task
from config.rules import SWEEP_KINDS, Rule
from policies import policy
from policies.base import TaskState
from runtime import Runtime
from workers.definitions import enforce_definitions
from workers.evaluation import Trigger, evaluate_states, evaluate_tasks, needs_of, read_entries
from workers.locks import KeptLock, task_locks

log = structlog.get_logger(__name__)

LOCK_TTL_SECONDS = 60
"""TTL of a sweep's locks (its kind's, and its tasks'), renewed while it runs: a killed sweep frees them
within a minute."""
TASKS_PER_PASS = 250
"""Tasks evaluated together: their reads and writes share batch requests (50 commands each)."""


class SweepBusy(Exception):
    """A sweep of this kind is already running."""


@dataclass
class SweepStats:
    kind: str
    dry_run: bool = False
    tasks_seen: int = 0
    entries_seen: int = 0
    evaluated: int = 0
    skipped_busy: int = 0
    changed: int = 0
    would_change: int = 0
    problems: int = 0
    missed_by_events: int = 0
    requests: int = 0
    seconds: float = 0.0

    def count(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            if decision.outcome == "changed":
                self.changed += 1
            elif decision.outcome == "would_change":
                self.would_change += 1
            else:
                self.problems += 1
            self.missed_by_events += decision.missed_by_events


Progress = Callable[[SweepStats], None]


def run_sweep(rt: Runtime, kind: str, *, rule_name: str | None = None, dry_run: bool = False,
              progress: Progress | None = None) -> SweepStats:
    """Run one sweep now, under its kind's lock.

    Raises:
        SweepBusy: another sweep of this kind runs.
        BitrixError: the portal failed; the cursor stays where it was.
    """
    if kind not in SWEEP_KINDS:
        raise ValueError(f"unknown sweep {kind!r}")
    lock = KeptLock(rt.redis, keys.sweep_lock(rt.portal.id, kind), LOCK_TTL_SECONDS)
    if not lock.acquire():
        raise SweepBusy(kind)
    stats = SweepStats(kind, dry_run=dry_run or rt.settings.taskwarden_dry_run)
    started, requests_before = time.monotonic(), rt.client.stats.requests

    def report(current: SweepStats) -> None:
        current.requests = rt.client.stats.requests - requests_before
        if progress is not None:
            progress(current)

    rules = [rule for rule in rt.rules.rules if rule.sweep and rule_name in (None, rule.name)]
    try:
        cursor = {"entries": _entries, "tasks": _tasks, "full": _full}[kind](rt, rules, stats, report)
        if not dry_run:  # --dry-run keeps the cursor; TASKWARDEN_DRY_RUN is audit mode and moves on
            _save_cursor(rt, kind, cursor)
    finally:
        lock.release()
    stats.seconds = round(time.monotonic() - started, 3)
    report(stats)
    log.info("sweep.completed", **asdict(stats))
    return stats


def _entries(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> dict[str, str]:
    """New entries since the last ID seen; the tasks owning one that matters to a rule reading entries (one
    over the lowest cap) are evaluated for those rules."""
    after = int(rt.redis.hget(keys.cursor(rt.portal.id, "entries"), "last_id") or 0)
    caps = [rule for rule in rules if policy(rule.policy).needs(rt.rules.params(rule)).entries]
    threshold = needs_of(rt.rules, caps).entries_over
    top = scan.highest_entry_id(rt.client)
    over: set[int] = set()
    for _covered, rows in scan.scan(rt.client, scan.entry_window(elapsed.ENTRY_SELECT), after, top):
        entries = [elapsed.entry_from_wire(row) for row in rows]
        stats.entries_seen += len(entries)
        over |= {e.task_id for e in entries if caps and (threshold is None or e.seconds > threshold)}
        report(stats)
    trigger = Trigger("sweep", sweep="entries")
    for group in _groups(sorted(over)):
        with task_locks(rt.redis, rt.portal.id, group, LOCK_TTL_SECONDS) as held:
            stats.skipped_busy += len(group) - len(held)
            stats.count(evaluate_tasks(rt, held, trigger, rules=caps, dry_run=stats.dry_run) if held else [])
            stats.evaluated += len(held)
        report(stats)
    return {"last_id": str(max(top, after))}


def _tasks(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> dict[str, str]:
    """Tasks changed since the cursor (a change time, plus the IDs already seen at that very second)."""
    saved: dict[bytes, bytes] = rt.redis.hgetall(keys.cursor(rt.portal.id, "tasks"))  # type: ignore[assignment]
    since = dt.datetime.fromisoformat(saved[b"changed"].decode()) if b"changed" in saved else None
    seen_then = set(json.loads(saved.get(b"ids", b"[]")))
    extra = {">=CHANGED_DATE": since.isoformat()} if since else {}
    newest, newest_ids = since, set(seen_then)
    for batch in _task_batches(rt, rules, extra, entries_scanned=False):
        fresh = [t for t in batch if not (since and t.changed_date == since and t.id in seen_then)]
        for task in fresh:
            if task.changed_date and (newest is None or task.changed_date > newest):
                newest, newest_ids = task.changed_date, {task.id}
            elif task.changed_date == newest:
                newest_ids.add(task.id)
        _evaluate_listed(rt, rules, fresh, None, Trigger("sweep", sweep="tasks"), stats, report)
    if newest is None:
        return {}
    return {"changed": newest.isoformat(), "ids": json.dumps(sorted(newest_ids))}


def _full(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> dict[str, str]:
    """Every time entry, then every task with its entries, then the definitions."""
    entries: dict[int, list[TimeEntry]] = {}
    if needs_of(rt.rules, rules).entries:
        top = scan.highest_entry_id(rt.client)
        for _covered, rows in scan.scan(rt.client, scan.entry_window(elapsed.ENTRY_SELECT), 0, top):
            for entry in (elapsed.entry_from_wire(row) for row in rows):
                entries.setdefault(entry.task_id, []).append(entry)
                stats.entries_seen += 1
            report(stats)
    for batch in _task_batches(rt, rules, {}, entries_scanned=True):
        _evaluate_listed(rt, rules, batch, entries, Trigger("sweep", sweep="full"), stats, report)
    stats.count(enforce_definitions(rt, cause="sweep", rules=rules, dry_run=stats.dry_run))
    return {"completed_at": str(int(time.time()))}


def _task_batches(rt: Runtime, rules: list[Rule], extra_filter: dict[str, str], *,
                  entries_scanned: bool) -> Iterable[list[Task]]:
    """Tasks (with the fields the rules read) in batches of about TASKS_PER_PASS, by ID windows.

    Unless the entries were scanned already, tasks come with their logged time, so that only those that
    can have an entry over a cap get their entries read (``Needs.entries_of``).
    """
    needs = needs_of(rt.rules, rules)
    select = tasks.select(needs.userfields, time_spent=not entries_scanned and needs.entries_over is not None)
    top = scan.highest_task_id(rt.client)
    pending: list[Task] = []
    for _covered, rows in scan.scan(rt.client, scan.task_window(select, extra_filter), 0, top):
        pending += [tasks.task_from_row(row) for row in rows]
        if len(pending) >= TASKS_PER_PASS:
            yield pending
            pending = []
    if pending:
        yield pending


def _evaluate_listed(rt: Runtime, rules: list[Rule], listed: list[Task], entries: dict[int, list[TimeEntry]] | None,
                     trigger: Trigger, stats: SweepStats, report: Progress) -> None:
    """Evaluate tasks already listed; entries come from the scan or are read for them, 50 rows per command."""
    stats.tasks_seen += len(listed)
    by_id = {task.id: task for task in listed}
    with task_locks(rt.redis, rt.portal.id, list(by_id), LOCK_TTL_SECONDS) as held:
        stats.skipped_busy += len(by_id) - len(held)
        needs = needs_of(rt.rules, rules)
        if entries is None and needs.entries:
            entries = read_entries(rt, [task_id for task_id in held if needs.entries_of(by_id[task_id])])
        states = [TaskState(by_id[task_id], (entries or {}).get(task_id, [])) for task_id in held]
        stats.count(evaluate_states(rt, states, trigger, rules=rules, dry_run=stats.dry_run))
        stats.evaluated += len(held)
    report(stats)


def _groups(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), TASKS_PER_PASS):
        yield ids[start:start + TASKS_PER_PASS]


def _save_cursor(rt: Runtime, kind: str, cursor: dict[str, str]) -> None:
    pipe = rt.redis.pipeline()
    if cursor:
        pipe.hset(keys.cursor(rt.portal.id, kind), mapping=dict(cursor))  # type: ignore[arg-type]
    pipe.hset(keys.sweeps_completed(rt.portal.id), kind, int(time.time()))
    pipe.execute()
