"""What a policy is, and what it works with: the state of one task read once and shared by every rule
(SPEC section 4), the reads it needs, the changes it proposes.

A policy is a module of this package ending in ``POLICY = Policy(...)``: its name in rules files, its params
model, its three functions and its facts. The rules schema, ``rules check``, evaluations and sweeps are built
from those records (``policies.POLICIES``), so no other module names a policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bitrix.batch import Command
from bitrix.elapsed import TimeEntry
from bitrix.tasks import Task
from policies.calendar import WorkCalendar


@dataclass(frozen=True)
class Needs:
    """The reads a set of rules needs beyond the task's own fields.

    ``entries_over``: only a task with more seconds logged than this can have an entry that matters
    (no single entry exceeds the total), so only such tasks' entries are read; None reads them all.
    """

    entries: bool = False
    userfields: tuple[str, ...] = ()
    entries_over: int | None = None

    def __or__(self, other: Needs) -> Needs:
        return Needs(entries=self.entries or other.entries,
                     userfields=tuple(sorted(set(self.userfields) | set(other.userfields))),
                     entries_over=_lower(self, other))

    def entries_of(self, task: Task) -> bool:
        """Whether ``task``'s entries must be read (its logged time unknown, or over the threshold)."""
        if not self.entries:
            return False
        return self.entries_over is None or task.time_spent is None or task.time_spent > self.entries_over


def _lower(one: Needs, other: Needs) -> int | None:
    """The threshold that serves both: the lower one; None (read all) wins."""
    if not (one.entries and other.entries):
        return one.entries_over if one.entries else other.entries_over
    if one.entries_over is None or other.entries_over is None:
        return None
    return min(one.entries_over, other.entries_over)


@dataclass(frozen=True)
class TaskState:
    task: Task
    entries: list[TimeEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Proposal:
    """A change a policy wants (``command``), or a violation it can only report (``command=None``)."""

    entity: str
    before: object
    after: object
    command: Command | None
    detail: str = ""


@dataclass(frozen=True)
class PolicyContext:
    """What policies may know beyond the task: the rules file's calendar."""

    calendar: WorkCalendar


@dataclass(frozen=True)
class Policy:
    """One policy: what rules files call it, its params model, its functions and its facts."""

    name: str
    params: type[BaseModel]
    needs: Callable[[Any], Needs]
    """What state it reads (``Needs``), given its params."""
    propose: Callable[[Any, TaskState, PolicyContext], list[Proposal]]
    """What must change, decided from ``state`` alone and as absolute values, so that it is idempotent."""
    describe: Callable[[Any], str]
    """What it does, in plain words, for ``rules check``."""
    changes_raise_events: bool = True
    """Whether the data it corrects raises a task event when changed; a change a ``tasks`` sweep finds first
    is then counted as missed by events. Time entries raise none."""
    mandatory_definitions: Callable[[Any], tuple[str, ...]] | None = None
    """Task fields whose definitions sweeps make ``MANDATORY: Y``, given its params."""
