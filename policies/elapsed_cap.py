"""``elapsed_cap``: no time entry longer than ``max_seconds`` (SPEC section 5).

``clamp`` sets the entry to the cap and keeps its comment, appending the note once; ``delete``
removes it. Entries at or under the cap are never touched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from bitrix import elapsed
from config.rules import StrictModel
from policies.base import Needs, Policy, PolicyContext, Proposal, TaskState


class ElapsedCapParams(StrictModel):
    """Cap the seconds of every time entry of a task."""

    max_seconds: PositiveInt
    action: Literal["clamp", "delete"] = "clamp"
    note: str = ""


def needs(params: ElapsedCapParams) -> Needs:
    """Entries, but only of tasks that logged more than the cap in all (reference 6.2, TIME_SPENT_IN_LOGS)."""
    return Needs(entries=True, entries_over=params.max_seconds)


def propose(params: ElapsedCapParams, state: TaskState, ctx: PolicyContext | None = None) -> list[Proposal]:
    return [_fix(params, entry) for entry in state.entries if entry.seconds > params.max_seconds]


def _fix(params: ElapsedCapParams, entry: elapsed.TimeEntry) -> Proposal:
    entity = f"entry:{entry.id}"
    if params.action == "delete":
        return Proposal(entity, entry.seconds, None, elapsed.delete(entry.task_id, entry.id))
    comment = clamped_comment(entry.comment, params.note)
    return Proposal(entity, entry.seconds, params.max_seconds,
                    elapsed.update(entry.task_id, entry.id, params.max_seconds, comment))


def clamped_comment(comment: str, note: str) -> str:
    """The comment with ``note`` appended, unless it already carries it anywhere: a user may have written on
    after an earlier clamp ("client call (capped at 8h) - call back"), and the note goes in once, never twice."""
    if not note.strip() or note.strip() in comment:
        return comment
    return comment + note


def describe(params: ElapsedCapParams) -> str:
    cap = duration(params.max_seconds)
    if params.action == "delete":
        return f"time entries over {cap} are deleted"
    note = f" and {params.note.strip()!r} appended to the comment" if params.note.strip() else ""
    return f"time entries over {cap} are clamped to {cap}{note}"


def duration(seconds: int) -> str:
    """28800 -> ``8h 0m``; 90 -> ``0h 1m 30s``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m" + (f" {secs}s" if secs else "")


POLICY = Policy(name="elapsed_cap", params=ElapsedCapParams, needs=needs, propose=propose, describe=describe,
                changes_raise_events=False)
