"""Evaluate tasks against the rules: read state in shared batches, decide, write what must change.

Built for many tasks at once (tasks are read 50 per command, time entries 50 rows per command, writes
go 50 per batch request), so that shared passes and sweeps share one path. Every write sets an absolute value decided
from the state read in the same pass, so a retried evaluation never applies a change twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog

import audit
from audit import Decision
from bitrix import elapsed, tasks
from bitrix.batch import MAX_COMMANDS, BatchResult, Command
from bitrix.elapsed import TimeEntry
from bitrix.errors import AccessDenied, AuthError, BitrixError, OperationTimeLimit
from bitrix.tasks import Task
from config.rules import Rule, RuleSet
from policies import policy
from policies.base import Needs, PolicyContext, Proposal, TaskState
from policies.calendar import calendar_for
from queueing import queue_recheck
from runtime import Runtime
from workers.capabilities import entries_filterable_by_task
from workers.locks import ensure_held
from workers.recording import record_decisions
from workers.scope import applies
from workers.writes import idempotency_key, send_writes

log = structlog.get_logger(__name__)

READ_GROUP = 50
"""Tasks per read command: ``tasks.task.list`` returns at most 50 rows."""


@dataclass(frozen=True)
class Trigger:
    """Why an evaluation runs: ``cause`` is ``event``, ``sweep`` or ``cli``; sweeps name their kind."""

    cause: str
    event_name: str | None = None
    event_id: str | None = None
    sweep: str | None = None

    @property
    def events_should_have_seen(self) -> bool:
        """A ``tasks`` sweep visits tasks that changed: their events should have brought them to us."""
        return self.sweep == "tasks"


@dataclass(frozen=True)
class _Plan:
    rule: Rule
    task_id: int
    changed: dt.datetime | None
    proposal: Proposal


class RetryableEvaluationError(Exception):
    """A transient portal failure during an evaluation; the job is retried as a whole."""


def evaluate_tasks(rt: Runtime, task_ids: list[int], trigger: Trigger, *, rules: list[Rule] | None = None,
                   dry_run: bool = False, event_ids: dict[int, str] | None = None) -> list[Decision]:
    """Read ``task_ids`` and evaluate them once; returns (and audits) every decision made.

    ``event_ids`` names, per task, the event that queued it (tasks of one pass came by different events).
    """
    rules = rt.rules.rules if rules is None else rules
    states, failures = read_states(rt, task_ids, needs_of(rt.rules, rules), trigger)
    return evaluate_states(rt, states, trigger, rules=rules, dry_run=dry_run, failures=failures,
                           event_ids=event_ids)


def evaluate_states(rt: Runtime, states: list[TaskState], trigger: Trigger, *, rules: list[Rule] | None = None,
                    dry_run: bool = False, failures: list[Decision] | None = None,
                    event_ids: dict[int, str] | None = None) -> list[Decision]:
    """Evaluate tasks whose state is already read (by ``read_states`` or a sweep's scan).

    ``rules`` limits the pass (default: all); ``dry_run`` makes every rule behave as ``mode: audit``.
    """
    rules = rt.rules.rules if rules is None else rules
    ctx = policy_context(rt.rules)
    today = dt.datetime.now(rt.rules.tz).date()
    plans = [plan for state in states for plan in _plan(rt.rules, rules, state, trigger, today, ctx)]
    applied, transient = _apply(rt, plans, trigger, dry_run or rt.settings.taskwarden_dry_run, event_ids or {})
    decisions = [*(failures or []), *applied]
    record_decisions(rt, decisions, rules, [state.task.id for state in states])
    if transient:  # what did happen is recorded; the retry reads again and finishes the rest
        paused = [error for error in transient if isinstance(error, OperationTimeLimit)]
        if paused:
            raise paused[0]
        raise RetryableEvaluationError(str(transient[0]))
    return decisions


def needs_of(ruleset: RuleSet, rules: list[Rule] | None = None) -> Needs:
    """Everything the rules read, so one pass serves them all."""
    needs = Needs()
    for rule in ruleset.rules if rules is None else rules:
        needs = needs | policy(rule.policy).needs(ruleset.params(rule))
    return needs


def policy_context(ruleset: RuleSet) -> PolicyContext:
    days = ruleset.holidays
    return PolicyContext(calendar_for(ruleset.timezone, days.country, days.subdivision, days.extra))


def read_states(rt: Runtime, task_ids: list[int], needs: Needs,
                trigger: Trigger) -> tuple[list[TaskState], list[Decision]]:
    """Read tasks 50 per command (``tasks.task.list`` by ID) and their entries 50 rows per command.

    Usually one batch request carries the tasks and the first page of entries of every group of 50
    tasks. But when the rules only care about tasks with more time logged than a cap
    (``Needs.entries_over``) and reading in two steps cannot take more requests (``_spent_first``), the
    tasks come first, with their logged time, and only the tasks over the cap get their entries read.
    Further pages, only when a group has more than 50 entries, follow in one more batch.
    """
    paused = paused_read(rt, needs)
    if paused is not None:
        raise paused
    groups = _groups(task_ids)
    select_spent = needs.entries and needs.entries_over is not None and _spent_first(len(groups))
    commands = {f"t{index}": tasks.list_by_ids(group, needs.userfields, time_spent=select_spent)
                for index, group in enumerate(groups)}
    entry_groups = groups if needs.entries and not select_spent else []
    commands.update(_first_entry_pages(rt, entry_groups))
    answers = rt.client.batch(commands)
    found = {task.id: task for key, result in answers.results.items() if key.startswith("t")
             for task in tasks.tasks_from_list(result)}
    if select_spent:
        entry_groups = _groups([task_id for task_id, task in found.items() if needs.entries_of(task)])
        answers.merge(_read_entry_pages(rt, entry_groups))
    else:
        _read_further_entry_pages(rt, entry_groups, answers)
    return _states(task_ids, found, groups, entry_groups, answers, trigger)


def read_methods(needs: Needs) -> list[str]:
    """The methods reading tasks for ``needs`` calls: a pass cannot do without any of them."""
    return [tasks.LIST_METHOD, *([elapsed.LIST_METHOD] if needs.entries else [])]


def paused_read(rt: Runtime, needs: Needs) -> OperationTimeLimit | None:
    """The pause (the one ending last) of a method reading for ``needs`` needs, or None when all are open.

    Asked before a pass sends anything: while the task read is paused, a request carrying only the rest of
    the read would be spent for nothing, and its tasks would come straight back to be read again.
    """
    paused = list(rt.client.paused(read_methods(needs)).values())
    return max(paused, key=lambda error: error.reset_at or 0) if paused else None


def read_entries(rt: Runtime, task_ids: list[int]) -> dict[int, list[TimeEntry]]:
    """Time entries of tasks already read (a sweep's listing), 50 rows per command.

    Raises:
        BitrixError: a page could not be read.
    """
    answers = _read_entry_pages(rt, _groups(task_ids))
    if answers.errors:
        raise next(iter(answers.errors.values()))
    return _entries_by_task(answers)


def _spent_first(groups: int) -> bool:
    """Whether reading tasks first and then only some tasks' entries costs no more requests than
    reading every group's tasks and entries together, even if every task turns out to need its entries.

    E.g. 50 groups (2,500 tasks): 2 requests together, 1 + 0..1 in two steps, so two steps; 10 groups:
    1 together, 1 + 0..1 in two steps, so together.
    """
    return 2 * -(-groups // MAX_COMMANDS) <= -(-2 * groups // MAX_COMMANDS)


def _groups(task_ids: list[int]) -> list[list[int]]:
    return [task_ids[start:start + READ_GROUP] for start in range(0, len(task_ids), READ_GROUP)]


def _read_entry_pages(rt: Runtime, groups: list[list[int]]) -> BatchResult:
    """Every page of these groups' entries: the first pages in one batch, the rest in one more."""
    if not groups:
        return BatchResult()
    answers = rt.client.batch(_first_entry_pages(rt, groups))
    _read_further_entry_pages(rt, groups, answers)
    return answers


def _first_entry_pages(rt: Runtime, groups: list[list[int]]) -> dict[str, Command]:
    """A page of 50 rows per group filtered by TASK_ID; on a portal whose getlist cannot filter by task, each
    task's whole list instead (``e{group}.t{task}``), which takes a command per task."""
    if not groups or entries_filterable_by_task(rt):
        return {f"e{index}.1": elapsed.list_for_tasks(group, page=1) for index, group in enumerate(groups)}
    return {f"e{index}.t{task_id}": elapsed.list_for_task(task_id)
            for index, group in enumerate(groups) for task_id in group}


def _read_further_entry_pages(rt: Runtime, groups: list[list[int]], answers: BatchResult) -> None:
    """A group with more than 50 entries: its other pages, in one more batch (merged into ``answers``)."""
    more = {f"e{index}.{page}": elapsed.list_for_tasks(group, page=page)
            for index, group in enumerate(groups) if f"e{index}.1" not in answers.errors
            for page in range(2, _pages(answers.totals.get(f"e{index}.1", 0)) + 1)}
    if more:
        answers.merge(rt.client.batch(more))


def _pages(total: int) -> int:
    return max(1, -(-total // elapsed.PAGE_SIZE))


def _entries_by_task(answers: BatchResult) -> dict[int, list[TimeEntry]]:
    entries: dict[int, list[TimeEntry]] = {}
    for key, result in answers.results.items():
        if key.startswith("e"):
            for entry in elapsed.entries_from_wire(result):
                entries.setdefault(entry.task_id, []).append(entry)
    return entries


def _states(task_ids: list[int], found: dict[int, Task], groups: list[list[int]], entry_groups: list[list[int]],
            answers: BatchResult, trigger: Trigger) -> tuple[list[TaskState], list[Decision]]:
    """The tasks read and their entries (``e{entry group}.{page}`` keys) as states; failed reads
    (``t{group}`` or entry keys) as the failure decisions of the tasks in those groups."""
    entries = _entries_by_task(answers)
    failures: list[Decision] = []
    unreadable: dict[int, BitrixError] = {}
    for key, error in answers.errors.items():
        index = int(key[1:].split(".")[0])
        for task_id in (groups if key.startswith("t") else entry_groups)[index]:
            unreadable.setdefault(task_id, error)
    states = []
    for task_id in task_ids:
        if task_id in unreadable:
            failures.append(_read_failure(task_id, unreadable[task_id], trigger))
            continue
        if task_id not in found:  # deleted or not visible to the webhook's user: recorded, not retried
            log.info("evaluation.task_not_visible", task_id=task_id)
            failures.append(Decision(rule="*", policy="*", mode="-", task_id=task_id, entity="task", before=None,
                                     after=None, outcome="error", cause=trigger.cause, event_id=trigger.event_id,
                                     detail=audit.TASK_NOT_FOUND))
            continue
        states.append(TaskState(found[task_id], entries.get(task_id, [])))
    return states, failures


def _read_failure(task_id: int, error: BitrixError, trigger: Trigger) -> Decision:
    if isinstance(error, OperationTimeLimit):
        raise error  # the job comes back when the method is open again
    if error.retryable:
        raise RetryableEvaluationError(str(error)) from error
    log.warning("evaluation.read_failed", task_id=task_id, code=error.code)
    return Decision(rule="*", policy="*", mode="-", task_id=task_id, entity="task", before=None, after=None,
                    outcome=_failure_outcome(error), cause=trigger.cause, event_id=trigger.event_id,
                    detail=str(error))


def _plan(ruleset: RuleSet, rules: list[Rule], state: TaskState, trigger: Trigger, today: dt.date,
          ctx: PolicyContext) -> list[_Plan]:
    return [_Plan(rule, state.task.id, state.task.changed_date, proposal)
            for rule in rules
            if applies(ruleset, rule, state.task, event_name=trigger.event_name, today=today)
            for proposal in policy(rule.policy).propose(ruleset.params(rule), state, ctx)]


def _apply(rt: Runtime, plans: list[_Plan], trigger: Trigger, dry: bool,
           event_ids: dict[int, str]) -> tuple[list[Decision], list[BitrixError]]:
    """Write the enforce-mode changes; audit mode and dry run only record them.

    Returns the decisions and the transient write errors (5xx and the like), which fail the job.

    Raises:
        LockLost: the lock of a task to write is no longer ours (it lapsed during a Redis outage or a
            stall, and another evaluation may hold it): nothing is written, and the job is run again.
    """
    writes: dict[str, tuple[Command, str | None]] = {}
    for i, plan in enumerate(plans):
        command = plan.proposal.command
        if command is not None and plan.rule.mode == "enforce" and not dry:
            key = idempotency_key(plan.rule.name, plan.task_id, plan.proposal.after, plan.changed)
            writes[f"w{i}"] = (command, key if command.v3 else None)
    if writes:
        ensure_held(rt.redis, rt.portal.id, sorted({plan.task_id for i, plan in enumerate(plans) if f"w{i}" in writes}))
        echoing = sorted({plan.task_id for i, plan in enumerate(plans)
                          if f"w{i}" in writes and policy(plan.rule.policy).changes_raise_events})
        if echoing and rt.settings.taskwarden_recheck_seconds:  # before writing: an echo may beat the answer
            queue_recheck(rt.queue(), rt.portal.id, echoing, rules_digest=rt.rules.digest,
                          delay_seconds=rt.settings.taskwarden_recheck_seconds)
    errors = send_writes(rt, writes) if writes else {}
    decisions = [_decide(plan, f"w{i}" in writes, errors.get(f"w{i}"), trigger, dry,
                         event_ids.get(plan.task_id, trigger.event_id)) for i, plan in enumerate(plans)]
    return decisions, [error for error in errors.values() if error.retryable]


def _decide(plan: _Plan, written: bool, error: BitrixError | None, trigger: Trigger, dry: bool,
            event_id: str | None) -> Decision:
    proposal = plan.proposal
    if proposal.command is None:
        outcome = "violation"
    elif not written:
        outcome = "would_change"
    elif error is not None:
        outcome = _failure_outcome(error)
    else:
        outcome = "changed"
    missed = (trigger.events_should_have_seen and bool(plan.rule.events)
              and policy(plan.rule.policy).changes_raise_events and outcome in ("changed", "would_change"))
    decision = Decision(rule=plan.rule.name, policy=plan.rule.policy, mode="audit" if dry else plan.rule.mode,
                        task_id=plan.task_id, entity=proposal.entity, before=proposal.before, after=proposal.after,
                        outcome=outcome, cause=trigger.cause, event_id=event_id,
                        detail=str(error) if error is not None else proposal.detail, missed_by_events=missed)
    # A sweep makes thousands of decisions and sums them up in its own line: each one is DEBUG there.
    emit = log.debug if trigger.cause == "sweep" else log.info
    emit(f"policy.{plan.rule.policy}.{outcome}", rule=plan.rule.name, task_id=plan.task_id,
         entity=proposal.entity, before=proposal.before, after=proposal.after)
    return decision


def _failure_outcome(error: BitrixError) -> str:
    return "not_allowed" if isinstance(error, AccessDenied | AuthError) else "error"
