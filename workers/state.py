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
    """The reads a set of rules needs beyond the task's own fields."""

    entries: bool = False
    userfields: tuple[str, ...] = ()

    def __or__(self, other: Needs) -> Needs:
        return Needs(entries=self.entries or other.entries,
                     userfields=tuple(sorted(set(self.userfields) | set(other.userfields))))


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
