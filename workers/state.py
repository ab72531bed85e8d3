"""What an evaluation knows about one task: read once, shared by every rule (SPEC section 4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitrix.batch import Command
from bitrix.elapsed import TimeEntry
from bitrix.tasks import Task

if TYPE_CHECKING:
    from workers.calendar import WorkCalendar


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
