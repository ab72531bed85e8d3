"""Evaluate tasks against the rules: read state in shared batches, decide, write what must change.

Built for many tasks at once (one batch carries the reads of 25 tasks, another up to 50 writes), so
that event-driven evaluations and sweeps share one path. Every write sets an absolute value decided
from the state read in the same pass, so a retried evaluation never applies a change twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import structlog

import audit
import keys
import metrics
import report
from audit import Decision
from bitrix import elapsed, tasks
from bitrix.batch import Command
from bitrix.errors import AccessDenied, AuthError, BitrixError, OperationTimeLimit
from config.rules import Rule, RuleSet
from runtime import Runtime
from workers.calendar import calendar_for
from workers.policies import policy
from workers.scope import applies
from workers.state import Needs, PolicyContext, Proposal, TaskState
from workers.writes import idempotency_key, send_writes

log = structlog.get_logger(__name__)

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
                   dry_run: bool = False) -> list[Decision]:
    """Read ``task_ids`` and evaluate them once; returns (and audits) every decision made."""
    rules = rt.rules.rules if rules is None else rules
    states, failures = read_states(rt, task_ids, needs_of(rt.rules, rules), trigger)
    return evaluate_states(rt, states, trigger, rules=rules, dry_run=dry_run, failures=failures)


def evaluate_states(rt: Runtime, states: list[TaskState], trigger: Trigger, *, rules: list[Rule] | None = None,
                    dry_run: bool = False, failures: list[Decision] | None = None) -> list[Decision]:
    """Evaluate tasks whose state is already read (by ``read_states`` or a sweep's scan).

    ``rules`` limits the pass (default: all); ``dry_run`` makes every rule behave as ``mode: audit``.
    """
    rules = rt.rules.rules if rules is None else rules
    ctx = policy_context(rt.rules)
    today = dt.datetime.now(rt.rules.tz).date()
    plans = [plan for state in states for plan in _plan(rt.rules, rules, state, trigger, today, ctx)]
    applied, transient = _apply(rt, plans, trigger, dry_run or rt.settings.taskwarden_dry_run)
    decisions = [*(failures or []), *applied]
    audit.record(rt.redis, rt.portal.id, decisions, rt.settings.taskwarden_audit_max_decisions)
    report.update(rt.redis, rt.portal.id, [rule.name for rule in rules], [state.task.id for state in states],
                  decisions)
    for (rule_name, outcome), count in Counter((d.rule, d.outcome) for d in decisions).items():
        metrics.count(rt.portal.id, "decisions", count, rule=rule_name, outcome=outcome)
    missed = Counter(d.rule for d in decisions if d.missed_by_events)
    for rule_name, count in missed.items():
        rt.redis.hincrby(keys.missed_by_events(rt.portal.id), rule_name, count)
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
            failures.append(_read_failure(task_id, error, trigger))
            continue
        task = tasks.task_from_wire(answers.results.get(f"t{task_id}"))
        if task is None:  # deleted or no longer visible to the webhook's user: recorded, not retried
            log.info("evaluation.task_not_visible", task_id=task_id)
            failures.append(Decision(rule="*", policy="*", mode="-", task_id=task_id, entity="task", before=None,
                                     after=None, outcome="error", cause=trigger.cause, event_id=trigger.event_id,
                                     detail="task not found or not visible to the webhook's user"))
            continue
        states.append(TaskState(task, elapsed.entries_from_wire(answers.results.get(f"e{task_id}"))))
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


def _apply(rt: Runtime, plans: list[_Plan], trigger: Trigger, dry: bool) -> tuple[list[Decision], list[BitrixError]]:
    """Write the enforce-mode changes; audit mode and dry run only record them.

    Returns the decisions and the transient write errors (5xx and the like), which fail the job.
    """
    writes: dict[str, tuple[Command, str | None]] = {}
    for i, plan in enumerate(plans):
        command = plan.proposal.command
        if command is not None and plan.rule.mode == "enforce" and not dry:
            key = idempotency_key(plan.rule.name, plan.task_id, plan.proposal.after, plan.changed)
            writes[f"w{i}"] = (command, key if command.v3 else None)
    errors = send_writes(rt, writes) if writes else {}
    decisions = [_decide(plan, f"w{i}" in writes, errors.get(f"w{i}"), trigger, dry) for i, plan in enumerate(plans)]
    return decisions, [error for error in errors.values() if error.retryable]


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
    # Time entries raise no event, so only task-data policies count as missed by events.
    missed = (trigger.events_should_have_seen and plan.rule.policy != "elapsed_cap"
              and outcome in ("changed", "would_change"))
    decision = Decision(rule=plan.rule.name, policy=plan.rule.policy, mode="audit" if dry else plan.rule.mode,
                        task_id=plan.task_id, entity=proposal.entity, before=proposal.before, after=proposal.after,
                        outcome=outcome, cause=trigger.cause, event_id=trigger.event_id,
                        detail=str(error) if error is not None else proposal.detail, missed_by_events=missed)
    log.info(f"policy.{plan.rule.policy}.{outcome}", rule=plan.rule.name, task_id=plan.task_id,
             entity=proposal.entity, before=proposal.before, after=proposal.after)
    return decision


def _failure_outcome(error: BitrixError) -> str:
    return "not_allowed" if isinstance(error, AccessDenied | AuthError) else "error"
