"""``deadline``: give tasks without a deadline one, and pull too-distant deadlines back (SPEC section 5).

Arithmetic in the rules file's time zone and calendar (``policies.calendar``); instants are compared,
never strings, because Bitrix24 prints dates in the calling user's offset. Written through REST 3.0
(``tasks.task.update`` with ``{id, fields: {deadline}}``), with the classic form as fallback.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import PositiveInt, field_validator, model_validator

from bitrix import tasks
from bitrix.tasks import STATUS_COMPLETED, Task
from config.rules import StrictModel
from policies.base import Needs, Policy, PolicyContext, Proposal, TaskState
from policies.calendar import WorkCalendar, deadline_for_new_task, latest_allowed, to_iso


class SetIfMissing(StrictModel):
    """A deadline for tasks without one: N working days (at a time of day) or N hours after creation."""

    workdays: PositiveInt | None = None
    hours: PositiveInt | None = None
    at: dt.time | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _quoted_time(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted 17:00 as the number 1020 (sexagesimal), which would become 00:17.
        if value is not None and not isinstance(value, str | dt.time):
            raise ValueError('write the time of day in quotes, e.g. at: "17:00"')
        return value

    @model_validator(mode="after")
    def _one_unit(self) -> SetIfMissing:
        if (self.workdays is None) == (self.hours is None):
            raise ValueError("give exactly one of workdays or hours")
        if self.at is not None and self.hours is not None:
            raise ValueError("at applies to workdays only")
        return self


class MaxAhead(StrictModel):
    """The latest deadline allowed: creation + N working days or N calendar days."""

    workdays: PositiveInt | None = None
    days: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> MaxAhead:
        if (self.workdays is None) == (self.days is None):
            raise ValueError("give exactly one of workdays or days")
        return self


class DeadlineParams(StrictModel):
    """Set a missing deadline and/or clamp one that lies too far ahead."""

    set_if_missing: SetIfMissing | None = None
    max_ahead: MaxAhead | None = None
    skip_closed: bool = True

    @model_validator(mode="after")
    def _something_to_do(self) -> DeadlineParams:
        if self.set_if_missing is None and self.max_ahead is None:
            raise ValueError("give set_if_missing, max_ahead or both")
        return self


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


POLICY = Policy(name="deadline", params=DeadlineParams, needs=needs, propose=propose, describe=describe)
