"""``mandatory_userfields``: listed task custom fields must not stay empty (SPEC section 5).

Values are read through classic ``tasks.task.get`` with the fields in ``select`` (they come back
camelCase) and written through classic ``tasks.task.update`` (UPPER_CASE). A field without a default
can only be reported (``violation``). Definitions are handled by ``workers.definitions``.
"""

from __future__ import annotations

from typing import Any

from bitrix import tasks
from config.rules import MandatoryUserfieldsParams
from workers.state import Needs, PolicyContext, Proposal, TaskState


def needs(params: MandatoryUserfieldsParams) -> Needs:
    return Needs(userfields=tuple(params.fields))


def propose(params: MandatoryUserfieldsParams, state: TaskState, ctx: PolicyContext | None = None) -> list[Proposal]:
    proposals = []
    for name, spec in params.fields.items():
        value = state.task.userfields.get(tasks.camel_case(name))
        if not is_empty(value):
            continue
        if spec.has_default:
            command = tasks.set_fields(state.task.id, {name: spec.default})
            proposals.append(Proposal(f"field:{name}", value, spec.default, command))
        else:
            proposals.append(Proposal(f"field:{name}", value, None, None, detail="empty and no default configured"))
    return proposals


def is_empty(value: Any) -> bool:
    """Null, empty text and an empty list are empty; ``0`` and ``false`` are values."""
    return value is None or value == "" or value == [] or value == {}


def describe(params: MandatoryUserfieldsParams) -> str:
    parts = []
    for name, spec in params.fields.items():
        parts.append(f"{name} (default {spec.default!r})" if spec.has_default else f"{name} (reported when empty)")
    text = "empty fields are filled: " + ", ".join(parts)
    if params.enforce_definition:
        text += "; their definitions are made mandatory"
    return text
