"""Evaluate tasks against the rules: read state in shared batches, decide, write what must change.

Built for many tasks at once (one batch carries the reads of 25 tasks, another up to 50 writes), so
that event-driven evaluations and sweeps share one path. Every write sets an absolute value decided
from the state read in the same pass, so a retried evaluation never applies a change twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog

import audit
from audit import Decision
from bitrix import elapsed, tasks
from bitrix.batch import BatchResult, Command
from bitrix.errors import AccessDenied, AuthError, BitrixError
from config.rules import Rule, RuleSet
from runtime import Runtime
from workers.policies import policy
from workers.scope import applies
from workers.state import Needs, Proposal, TaskState

log = structlog.get_logger(__name__)

TASKS_PER_READ_BATCH = 25
"""Each task costs two read commands (the task, its time entries); a batch carries 50."""


@dataclass(frozen=True)
class Trigger:
    """Why an evaluation runs: ``cause`` is ``event``, ``sweep`` or ``cli``."""

    cause: str
    event_name: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class _Plan:
    rule: Rule
    task_id: int
    proposal: Proposal


class RetryableEvaluationError(Exception):
    """A transient portal failure during an evaluation; the job is retried as a whole."""


def evaluate_tasks(rt: Runtime, task_ids: list[int], trigger: Trigger) -> list[Decision]:
    """Evaluate ``task_ids`` once; returns (and audits) every decision made."""
    states, decisions = read_states(rt, task_ids, needs_of(rt.rules), trigger)
    today = dt.datetime.now(rt.rules.tz).date()
    plans = [plan for state in states for plan in _plan(rt.rules, state, trigger, today)]
    applied, transient = _apply(rt, plans, trigger)
    decisions += applied
    audit.record(rt.redis, rt.portal.id, decisions)
    if transient:  # what did happen is recorded; the retry reads again and finishes the rest
        raise RetryableEvaluationError(str(transient[0]))
    return decisions


def needs_of(ruleset: RuleSet) -> Needs:
    """Everything any rule reads, so one pass serves them all."""
    needs = Needs()
    for rule in ruleset.rules:
        needs = needs | policy(rule.policy).needs(ruleset.params(rule))
    return needs


def read_states(rt: Runtime, task_ids: list[int], needs: Needs,
                trigger: Trigger) -> tuple[list[TaskState], list[Decision]]:
    """Read each task (and its entries when needed) in shared batches; tasks the portal hides are skipped."""
    commands: dict[str, Command] = {}
    for task_id in task_ids:
        commands[f"t{task_id}"] = tasks.get(task_id, needs.userfields)
        if needs.entries:
            commands[f"e{task_id}"] = elapsed.list_for_task(task_id)
    answers = rt.client.batch(commands)
    states: list[TaskState] = []
    failures: list[Decision] = []
    for task_id in task_ids:
        error = answers.errors.get(f"t{task_id}") or answers.errors.get(f"e{task_id}")
        if error is not None:
            failures.append(_read_failure(rt, task_id, error, trigger))
            continue
        task = tasks.task_from_wire(answers.results.get(f"t{task_id}"))
        if task is None:
            log.info("evaluation.task_not_visible", task_id=task_id)
            continue
        states.append(TaskState(task, elapsed.entries_from_wire(answers.results.get(f"e{task_id}"))))
    return states, failures


def _read_failure(rt: Runtime, task_id: int, error: BitrixError, trigger: Trigger) -> Decision:
    if error.retryable:
        raise RetryableEvaluationError(str(error)) from error
    log.warning("evaluation.read_failed", task_id=task_id, code=error.code)
    return Decision(rule="*", policy="*", mode="-", task_id=task_id, entity="task", before=None, after=None,
                    outcome=_failure_outcome(error), cause=trigger.cause, event_id=trigger.event_id,
                    detail=str(error))


def _plan(ruleset: RuleSet, state: TaskState, trigger: Trigger, today: dt.date) -> list[_Plan]:
    return [_Plan(rule, state.task.id, proposal)
            for rule in ruleset.rules
            if applies(ruleset, rule, state.task, event_name=trigger.event_name, today=today)
            for proposal in policy(rule.policy).propose(ruleset.params(rule), state)]


def _apply(rt: Runtime, plans: list[_Plan], trigger: Trigger) -> tuple[list[Decision], list[BitrixError]]:
    """Write the enforce-mode changes in shared batches; audit mode and dry run only record them.

    Returns the decisions and the transient write errors (5xx and the like inside the batch).
    """
    dry = rt.settings.taskwarden_dry_run
    writes: dict[str, Command] = {f"w{i}": plan.proposal.command for i, plan in enumerate(plans)
                                  if plan.proposal.command is not None and plan.rule.mode == "enforce" and not dry}
    answers = rt.client.batch(writes) if writes else BatchResult()
    decisions = [_decide(plan, f"w{i}" in writes, answers.errors.get(f"w{i}"), trigger, dry)
                 for i, plan in enumerate(plans)]
    return decisions, [error for error in answers.errors.values() if error.retryable]


def _decide(plan: _Plan, written: bool, error: BitrixError | None, trigger: Trigger, dry: bool) -> Decision:
    proposal = plan.proposal
    if proposal.command is None:
        outcome = "violation"
    elif not written:
        outcome = "would_change"
    elif error is not None:
        outcome = _failure_outcome(error)
    else:
        outcome = "changed"
    mode = "audit" if dry else plan.rule.mode
    decision = Decision(rule=plan.rule.name, policy=plan.rule.policy, mode=mode, task_id=plan.task_id,
                        entity=proposal.entity, before=proposal.before, after=proposal.after, outcome=outcome,
                        cause=trigger.cause, event_id=trigger.event_id,
                        detail=str(error) if error is not None else proposal.detail)
    log.info(f"policy.{plan.rule.policy}.{outcome}", rule=plan.rule.name, task_id=plan.task_id,
             entity=proposal.entity, before=proposal.before, after=proposal.after)
    return decision


def _failure_outcome(error: BitrixError) -> str:
    return "not_allowed" if isinstance(error, AccessDenied | AuthError) else "error"
