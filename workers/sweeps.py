"""Sweeps (SPEC section 6): find what events missed or cannot carry, and evaluate it.

- ``entries``: time entries created since the last entry ID seen (Bitrix24 raises no event for them);
  the tasks owning an entry that matters (over a cap) are evaluated for the rules that read entries.
- ``tasks``: tasks changed since the cursor, evaluated for every rule with ``sweep: true``.
- ``full``: every task with all its time entries, plus the field-definition check.

Collections are read in ID order, 2,500 rows per batch request (``bitrix.scan``), so a sweep costs what it
reads, whatever the portal's IDs look like. A cursor moves only when its sweep completes, so an interrupted
sweep is simply run again (evaluations are idempotent).

A task an event job is evaluating at that moment is skipped, but not forgotten: the job may have read the
task before what the sweep found (a new time entry raises no event, so nothing brings the task back). The
``entries`` and ``tasks`` sweeps keep the tasks they skip (``keys.sweep_skipped``), and the next sweep of
the kind evaluates them again, wherever its cursor stands. A ``full`` sweep's skips need no such list: the
next one reads everything again, and the other two cover what changes in between.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

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
TASKS_PER_PASS = 2500
"""Tasks evaluated together: what one listing request reads, and as many as one batch request can read
the first page of entries for (50 groups of 50). Smaller passes would leave those requests part empty: a
``tasks`` sweep finding 500 changed tasks would read their entries in four requests instead of two."""
RECHECK = Trigger("sweep", sweep="recheck")
"""A task the last sweep of its kind skipped as busy: an event job was evaluating it then, so a change found
now was not missed by events."""


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


@dataclass
class _Done:
    """What a completed sweep leaves for the next one of its kind."""

    cursor: dict[str, str]
    skipped: set[int] = field(default_factory=set)
    """Tasks skipped as busy, to evaluate next time."""
    rechecked: set[int] = field(default_factory=set)
    """Tasks skipped last time and taken up again by this sweep."""


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
        done = {"entries": _entries, "tasks": _tasks, "full": _full}[kind](rt, rules, stats, report)
        if not dry_run:  # --dry-run keeps the cursor; TASKWARDEN_DRY_RUN is audit mode and moves on
            _save(rt, kind, done, every_rule=rule_name is None)
    finally:
        lock.release()
    stats.seconds = round(time.monotonic() - started, 3)
    report(stats)
    log.info("sweep.completed", **asdict(stats))
    return stats


def _entries(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> _Done:
    """New entries since the last ID seen; the tasks owning one that matters to a rule reading entries (one
    over the lowest cap), and the tasks the last entries sweep skipped, are evaluated for those rules."""
    last_id = int(rt.redis.hget(keys.cursor(rt.portal.id, "entries"), "last_id") or 0)
    caps = [rule for rule in rules if policy(rule.policy).needs(rt.rules.params(rule)).entries]
    threshold = needs_of(rt.rules, caps).entries_over
    rechecked = _skipped_before(rt, "entries") if caps else set()
    over = set(rechecked)
    for rows in scan.read(rt.client, scan.entries_listing(elapsed.ENTRY_SELECT), last_id):
        entries = [elapsed.entry_from_wire(row) for row in rows]
        stats.entries_seen += len(entries)
        last_id = max([last_id, *(entry.id for entry in entries)])
        over |= {e.task_id for e in entries if caps and (threshold is None or e.seconds > threshold)}
        report(stats)
    skipped = _evaluate_ids(rt, sorted(over), caps, Trigger("sweep", sweep="entries"), stats, report)
    return _Done({"last_id": str(last_id)}, skipped, rechecked)


def _tasks(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> _Done:
    """Tasks changed since the cursor (a change time, plus the IDs already seen at that very second), then
    the tasks the last tasks sweep skipped, unless they changed again and were just evaluated."""
    saved: dict[bytes, bytes] = rt.redis.hgetall(keys.cursor(rt.portal.id, "tasks"))  # type: ignore[assignment]
    since = dt.datetime.fromisoformat(saved[b"changed"].decode()) if b"changed" in saved else None
    seen_then = set(json.loads(saved.get(b"ids", b"[]")))
    extra = {">=CHANGED_DATE": since.isoformat()} if since else {}
    newest, newest_ids = since, set(seen_then)
    rechecked = _skipped_before(rt, "tasks") if rules else set()
    visited: set[int] = set()
    skipped: set[int] = set()
    for batch in _passes(_listed(rt, rules, extra, entries_scanned=False)):
        fresh = [t for t in batch if not (since and t.changed_date == since and t.id in seen_then)]
        for task in fresh:
            if task.changed_date and (newest is None or task.changed_date > newest):
                newest, newest_ids = task.changed_date, {task.id}
            elif task.changed_date == newest:
                newest_ids.add(task.id)
        visited |= {task.id for task in fresh}
        skipped |= _evaluate_listed(rt, rules, fresh, None, Trigger("sweep", sweep="tasks"), stats, report)
    skipped |= _evaluate_ids(rt, sorted(rechecked - visited), rules, RECHECK, stats, report)
    cursor = {} if newest is None else {"changed": newest.isoformat(), "ids": json.dumps(sorted(newest_ids))}
    return _Done(cursor, skipped, rechecked)


def _full(rt: Runtime, rules: list[Rule], stats: SweepStats, report: Progress) -> _Done:
    """Every time entry, then every task with its entries, then the definitions.

    The first pages of both listings, with their counts, come in one request."""
    needs = needs_of(rt.rules, rules)
    task_listing = scan.tasks_listing(tasks.select(needs.userfields))
    entry_listing = scan.entries_listing(elapsed.ENTRY_SELECT)
    wanted = {"tasks": (task_listing, 0), **({"entries": (entry_listing, 0)} if needs.entries else {})}
    first = scan.first_pages(rt.client, wanted)
    entries: dict[int, list[TimeEntry]] = {}
    if needs.entries:
        for rows in scan.read(rt.client, entry_listing, 0, first["entries"]):
            for entry in (elapsed.entry_from_wire(row) for row in rows):
                entries.setdefault(entry.task_id, []).append(entry)
                stats.entries_seen += 1
            report(stats)
    listed = (tasks.task_from_row(row) for rows in scan.read(rt.client, task_listing, 0, first["tasks"])
              for row in rows)
    for batch in _passes(listed):
        _evaluate_listed(rt, rules, batch, entries, Trigger("sweep", sweep="full"), stats, report)
    stats.count(enforce_definitions(rt, cause="sweep", rules=rules, dry_run=stats.dry_run))
    return _Done({"completed_at": str(int(time.time()))})


def _listed(rt: Runtime, rules: list[Rule], extra_filter: dict[str, str], *, entries_scanned: bool) -> Iterator[Task]:
    """Tasks matching ``extra_filter`` with the fields the rules read, in ID order.

    Unless the entries were scanned already, tasks come with their logged time, so that only those that
    can have an entry over a cap get their entries read (``Needs.entries_of``).
    """
    needs = needs_of(rt.rules, rules)
    select = tasks.select(needs.userfields, time_spent=not entries_scanned and needs.entries_over is not None)
    for rows in scan.read(rt.client, scan.tasks_listing(select, extra_filter), 0):
        yield from (tasks.task_from_row(row) for row in rows)


def _passes(listed: Iterable[Task]) -> Iterator[list[Task]]:
    """Tasks in passes of TASKS_PER_PASS, as they are listed."""
    pending: list[Task] = []
    for task in listed:
        pending.append(task)
        if len(pending) == TASKS_PER_PASS:
            yield pending
            pending = []
    if pending:
        yield pending


def _evaluate_listed(rt: Runtime, rules: list[Rule], listed: list[Task], entries: dict[int, list[TimeEntry]] | None,
                     trigger: Trigger, stats: SweepStats, report: Progress) -> set[int]:
    """Evaluate tasks already listed; entries come from the scan or are read for them, 50 rows per command.

    Returns the tasks skipped because an evaluation of theirs was running."""
    stats.tasks_seen += len(listed)
    by_id = {task.id: task for task in listed}
    with task_locks(rt.redis, rt.portal.id, list(by_id), LOCK_TTL_SECONDS) as held:
        skipped = set(by_id) - set(held)
        stats.skipped_busy += len(skipped)
        needs = needs_of(rt.rules, rules)
        if entries is None and needs.entries:
            entries = read_entries(rt, [task_id for task_id in held if needs.entries_of(by_id[task_id])])
        states = [TaskState(by_id[task_id], (entries or {}).get(task_id, [])) for task_id in held]
        stats.count(evaluate_states(rt, states, trigger, rules=rules, dry_run=stats.dry_run))
        stats.evaluated += len(held)
    report(stats)
    return skipped


def _evaluate_ids(rt: Runtime, task_ids: list[int], rules: list[Rule], trigger: Trigger, stats: SweepStats,
                  report: Progress) -> set[int]:
    """Read and evaluate tasks known only by ID, a pass at a time; returns those skipped as busy."""
    skipped: set[int] = set()
    for start in range(0, len(task_ids), TASKS_PER_PASS):
        group = task_ids[start:start + TASKS_PER_PASS]
        with task_locks(rt.redis, rt.portal.id, group, LOCK_TTL_SECONDS) as held:
            skipped |= set(group) - set(held)
            stats.count(evaluate_tasks(rt, held, trigger, rules=rules, dry_run=stats.dry_run) if held else [])
            stats.evaluated += len(held)
        report(stats)
    stats.skipped_busy += len(skipped)
    return skipped


def _skipped_before(rt: Runtime, kind: str) -> set[int]:
    members: set[bytes] = rt.redis.smembers(keys.sweep_skipped(rt.portal.id, kind))  # type: ignore[assignment]
    return {int(member) for member in members}


def _save(rt: Runtime, kind: str, done: _Done, *, every_rule: bool) -> None:
    """Move the cursor and update the skipped tasks in one transaction.

    Every task taken up again was evaluated or skipped anew (and so is added back); a sweep limited to one
    rule evaluated them for that rule only, and leaves them to the next sweep of the kind that runs them all.
    """
    skipped_key = keys.sweep_skipped(rt.portal.id, kind)
    pipe = rt.redis.pipeline()
    if done.cursor:
        pipe.hset(keys.cursor(rt.portal.id, kind), mapping=dict(done.cursor))  # type: ignore[arg-type]
    if every_rule and done.rechecked:
        pipe.srem(skipped_key, *done.rechecked)
    if done.skipped:
        pipe.sadd(skipped_key, *done.skipped)
    pipe.hset(keys.sweeps_completed(rt.portal.id), kind, int(time.time()))
    pipe.execute()
