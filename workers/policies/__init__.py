"""Policies, routed by name through one table. Each is a module with the same two functions:

``needs(params) -> Needs`` says what state it reads; ``propose(params, state, ctx) -> list[Proposal]`` says
what must change, deciding only from ``state`` and writing absolute values, so it is idempotent;
``describe(params) -> str`` says in plain words what it does, for ``rules check``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

from workers.policies import deadline, elapsed_cap, mandatory_userfields
from workers.state import Needs, PolicyContext, Proposal, TaskState


class Policy(Protocol):
    def needs(self, params: Any) -> Needs: ...

    def propose(self, params: Any, state: TaskState, ctx: PolicyContext) -> list[Proposal]: ...

    def describe(self, params: Any) -> str: ...


POLICIES: dict[str, ModuleType] = {"elapsed_cap": elapsed_cap, "deadline": deadline,
                                   "mandatory_userfields": mandatory_userfields}


def policy(name: str) -> Policy:
    """The policy module for a rule's ``policy`` key (validated at rules load, so always present)."""
    return POLICIES[name]  # type: ignore[return-value,unused-ignore]
