"""``deadline``: give tasks without a deadline one, and pull too-distant deadlines back (SPEC section 5).

Arithmetic in the rules file's time zone and calendar (``workers.calendar``); instants are compared,
never strings, because Bitrix24 prints dates in the calling user's offset. Written through REST 3.0
(``tasks.task.update`` with ``{id, fields: {deadline}}``), with the classic form as fallback.
"""

from __future__ import annotations

import datetime as dt

from bitrix import tasks
from bitrix.tasks import STATUS_COMPLETED, Task
from config.rules import DeadlineParams
from workers.calendar import WorkCalendar, deadline_for_new_task, latest_allowed, to_iso
from workers.state import Needs, PolicyContext, Proposal, TaskState


def needs(params: DeadlineParams) -> Needs:
    return Needs()  # creation date, deadline and status come with every task read


def propose(params: DeadlineParams, state: TaskState, ctx: PolicyContext) -> list[Proposal]:
    task = state.task
    if (params.skip_closed and task.status == STATUS_COMPLETED) or task.created_date is None:
        return []
    target = _target(params, task, ctx.calendar)
    if target is None or (task.deadline is not None and _same_instant(task.deadline, target)):
        return []
    value = to_iso(target)
    before = to_iso(task.deadline) if task.deadline else None
    return [Proposal("deadline", before, value, tasks.set_deadline(task.id, value))]


def _target(params: DeadlineParams, task: Task, calendar: WorkCalendar) -> dt.datetime | None:
    """The deadline the task should have, or None when its current one is fine."""
    assert task.created_date is not None
    bound = None
    if params.max_ahead is not None:
        bound = latest_allowed(task.created_date, calendar, workdays=params.max_ahead.workdays,
                               days=params.max_ahead.days)
    if task.deadline is None:
        if params.set_if_missing is None:
            return None
        wanted = deadline_for_new_task(task.created_date, calendar, workdays=params.set_if_missing.workdays,
                                       hours=params.set_if_missing.hours, at=params.set_if_missing.at)
        return bound if bound is not None and bound.timestamp() < wanted.timestamp() else wanted
    if bound is not None and task.deadline.timestamp() > bound.timestamp():
        return bound
    return None


def _same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    # Compare instants: == between aware datetimes misreads the repeated DST hour across zones.
    return a.timestamp() == b.timestamp()


def describe(params: DeadlineParams) -> str:
    parts = []
    if params.set_if_missing is not None:
        rule = params.set_if_missing
        span = f"{rule.workdays} working day(s)" if rule.workdays else f"{rule.hours} hour(s)"
        at = f" at {rule.at.strftime('%H:%M')}" if rule.at else ""
        parts.append(f"tasks without a deadline get one {span} after creation{at}")
    if params.max_ahead is not None:
        ahead = params.max_ahead
        span = f"{ahead.workdays} working day(s)" if ahead.workdays else f"{ahead.days} day(s)"
        parts.append(f"deadlines more than {span} after creation are moved back to that limit")
    if params.skip_closed:
        parts.append("completed tasks are left alone")
    return "; ".join(parts)
