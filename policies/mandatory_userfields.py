"""``mandatory_userfields``: listed task custom fields must not stay empty (SPEC section 5).

Values are read through classic ``tasks.task.get`` with the fields in ``select`` (they come back
camelCase) and written through classic ``tasks.task.update`` (UPPER_CASE). A field without a default
can only be reported (``violation``). With ``enforce_definition``, sweeps make the fields' definitions
mandatory (``workers.definitions``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from bitrix import tasks
from config.rules import StrictModel
from policies.base import Needs, Policy, PolicyContext, Proposal, TaskState


class FieldRule(StrictModel):
    """One mandatory field; ``default`` (any value, including null) is written into empty ones when given."""

    default: Any = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class MandatoryUserfieldsParams(StrictModel):
    """Task custom fields that must not stay empty, and optionally their definitions made mandatory."""

    fields: dict[str, FieldRule] = Field(min_length=1)
    enforce_definition: bool = False

    @field_validator("fields", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not _UF_NAME.match(name):
                    raise ValueError(f"'{name}' is not a task field name (UF_ followed by A-Z, 0-9, _)")
            return {name: spec if spec is not None else {} for name, spec in value.items()}
        return value


_UF_NAME = re.compile(r"^UF_[A-Z0-9_]{1,50}$")


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


def mandatory_definitions(params: MandatoryUserfieldsParams) -> tuple[str, ...]:
    return tuple(params.fields) if params.enforce_definition else ()


POLICY = Policy(name="mandatory_userfields", params=MandatoryUserfieldsParams, needs=needs, propose=propose,
                describe=describe, mandatory_definitions=mandatory_definitions)
