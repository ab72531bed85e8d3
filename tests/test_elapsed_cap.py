"""The elapsed_cap policy on its own: what it proposes for which entries."""

from __future__ import annotations

from bitrix.elapsed import TimeEntry
from bitrix.tasks import Task
from policies import elapsed_cap
from policies.base import TaskState
from policies.elapsed_cap import ElapsedCapParams

TASK = Task(id=1, status=2, group_id=0, responsible_id=1, created_by=1)


def state(*entries: tuple[int, int, str]) -> TaskState:
    return TaskState(TASK, [TimeEntry(id=i, task_id=1, user_id=1, seconds=s, comment=c) for i, s, c in entries])


class TestPropose:
    def test_clamp_keeps_comment_and_appends_note(self) -> None:
        """An entry over the cap is set to the cap; the comment is kept and the note appended."""
        [proposal] = elapsed_cap.propose(ElapsedCapParams(max_seconds=28800, note=" (capped at 8h)"),
                                         state((5, 36000, "client call")))
        assert (proposal.entity, proposal.before, proposal.after) == ("entry:5", 36000, 28800)
        assert proposal.command is not None
        assert proposal.command.params == [1, 5, {"SECONDS": 28800, "COMMENT_TEXT": "client call (capped at 8h)"}]

    def test_note_never_twice(self) -> None:
        """A comment that already ends with the note keeps it once."""
        [proposal] = elapsed_cap.propose(ElapsedCapParams(max_seconds=100, note=" (capped)"),
                                         state((5, 200, "call (capped)")))
        assert proposal.command is not None and isinstance(proposal.command.params, list)
        assert proposal.command.params[2]["COMMENT_TEXT"] == "call (capped)"

    def test_note_never_twice_when_the_user_wrote_on(self) -> None:
        """A user who wrote after the note (the entry edited back over the cap) keeps one note, not two."""
        [proposal] = elapsed_cap.propose(ElapsedCapParams(max_seconds=100, note=" (capped at 8h)"),
                                         state((5, 200, "client call (capped at 8h) - call back")))
        assert proposal.command is not None and isinstance(proposal.command.params, list)
        assert proposal.command.params[2]["COMMENT_TEXT"] == "client call (capped at 8h) - call back"

    def test_at_or_under_cap_untouched(self) -> None:
        """Entries at the cap or under it produce nothing."""
        assert elapsed_cap.propose(ElapsedCapParams(max_seconds=100), state((1, 100, ""), (2, 5, ""))) == []

    def test_delete(self) -> None:
        """With action delete only the over-cap entries are deleted."""
        proposals = elapsed_cap.propose(ElapsedCapParams(max_seconds=100, action="delete"),
                                        state((1, 101, ""), (2, 99, "")))
        assert [(p.entity, p.command.method if p.command else None) for p in proposals] == [
            ("entry:1", "task.elapseditem.delete")]
