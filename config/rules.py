"""The rules file (SPEC section 5): YAML loaded with ``safe_load`` and validated by pydantic models.

Errors name the rule and the key (``rule 'cap-time-entries': params.max_seconds: ...``) so an
administrator can fix the file without reading a traceback.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from config.settings import ConfigError

TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE")
"""Task events a rule may subscribe to; Bitrix24 sends only the task id with them."""
AVAILABLE_POLICIES = ("elapsed_cap", "deadline", "mandatory_userfields")
DEFAULT_SWEEPS = {"entries": "* * * * *", "tasks": "*/15 * * * *", "full": "0 3 * * *"}


class RulesError(ConfigError):
    """A rules file that cannot be used; ``problems`` lists every finding, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"rules file {source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


IdList = list[PositiveInt]


class Match(_Strict):
    """Which tasks a rule applies to: AND of the keys given, OR within each list."""

    group_id: IdList | None = None
    responsible_id: IdList | None = None
    created_by: IdList | None = None
    status: list[int] | None = None

    @field_validator("group_id", "responsible_id", "created_by", "status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class ElapsedCapParams(_Strict):
    """Cap the seconds of every time entry of a task."""

    max_seconds: PositiveInt
    action: Literal["clamp", "delete"] = "clamp"
    note: str = ""


class SetIfMissing(_Strict):
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


class MaxAhead(_Strict):
    """The latest deadline allowed: creation + N working days or N calendar days."""

    workdays: PositiveInt | None = None
    days: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> MaxAhead:
        if (self.workdays is None) == (self.days is None):
            raise ValueError("give exactly one of workdays or days")
        return self


class DeadlineParams(_Strict):
    """Set a missing deadline and/or clamp one that lies too far ahead."""

    set_if_missing: SetIfMissing | None = None
    max_ahead: MaxAhead | None = None
    skip_closed: bool = True

    @model_validator(mode="after")
    def _something_to_do(self) -> DeadlineParams:
        if self.set_if_missing is None and self.max_ahead is None:
            raise ValueError("give set_if_missing, max_ahead or both")
        return self


class FieldRule(_Strict):
    """One mandatory field; ``default`` (any value, including null) is written into empty ones when given."""

    default: Any = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class MandatoryUserfieldsParams(_Strict):
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

POLICY_PARAMS: dict[str, type[_Strict]] = {"elapsed_cap": ElapsedCapParams, "deadline": DeadlineParams,
                                           "mandatory_userfields": MandatoryUserfieldsParams}


class Rule(_Strict):
    """One named rule: a policy, its parameters, and where and when it applies."""

    name: str = Field(pattern=r"^[a-z0-9-]+$", max_length=64)
    policy: str
    mode: Literal["enforce", "audit"] = "enforce"
    events: tuple[Literal["ONTASKADD", "ONTASKUPDATE"], ...] = ("ONTASKADD", "ONTASKUPDATE")
    match: Match = Match()
    sweep: bool = True
    params: Any = None

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in POLICY_PARAMS:
            raise ValueError(f"unknown policy '{value}' (known: {', '.join(AVAILABLE_POLICIES)})")
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _upper_events(cls, value: Any) -> Any:
        return [str(v).upper() for v in value] if isinstance(value, list) else value


class Exemption(_Strict):
    """Tasks left alone: every key given must fit (task ids, group ids, which rules, until when)."""

    task_id: IdList | None = None
    group_id: IdList | None = None
    rules: list[str] | None = None
    until: dt.date | None = None


class Holidays(_Strict):
    """Public holidays from the ``holidays`` package plus dates of the portal's own."""

    country: str | None = None
    subdivision: str | None = None
    extra: list[dt.date] = []

    @model_validator(mode="after")
    def _known_calendar(self) -> Holidays:
        supported = holidays.list_supported_countries()
        if self.country is not None and self.country not in supported:
            raise ValueError(f"unknown holiday country '{self.country}'")
        if self.subdivision is not None:
            if self.country is None:
                raise ValueError("subdivision needs a country")
            if self.subdivision not in supported[self.country]:
                raise ValueError(f"unknown subdivision '{self.subdivision}' for country '{self.country}'")
        return self


class RuleSet(_Strict):
    """A validated rules file."""

    timezone: str = "UTC"
    holidays: Holidays = Holidays()
    sweeps: dict[Literal["entries", "tasks", "full"], str] = DEFAULT_SWEEPS  # type: ignore[assignment]
    exemptions: list[Exemption] = []
    rules: list[Rule] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone '{value}'") from None
        return value

    @field_validator("sweeps", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name, expression in value.items():
            if not isinstance(expression, str) or not croniter.is_valid(expression):
                raise ValueError(f"{name}: '{expression}' is not a cron expression")
        return {**DEFAULT_SWEEPS, **value}

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def subscribed_events(self) -> frozenset[str]:
        """Event names at least one rule listens to; anything else is answered ``ignored``. Computed once:
        intake asks on every event, and a rule set never changes after loading (frozen)."""
        return frozenset(event for rule in self.rules for event in rule.events)

    def params(self, rule: Rule) -> Any:
        """The rule's parameters as their policy's model (validated at load)."""
        return POLICY_PARAMS[rule.policy].model_validate(rule.params or {})


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file.

    Raises:
        RulesError: the file is missing, not YAML, or breaks the schema; every problem is listed.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(source, [f"cannot read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(source, [f"not valid YAML: {exc}"]) from None
    return parse_rules(raw if raw is not None else {}, source)


def parse_rules(raw: Any, source: str = "<rules>") -> RuleSet:
    """Validate already-parsed YAML; see :func:`load_rules`."""
    if not isinstance(raw, dict):
        raise RulesError(source, ["the top level must be a mapping"])
    problems = _rule_problems(raw.get("rules"))
    try:
        ruleset = RuleSet.model_validate(raw)
    except ValidationError as exc:
        # Errors inside a rule were already reported by _rule_problems, with the rule's name.
        problems += [_message(error["loc"], error["msg"]) for error in exc.errors()
                     if len(error["loc"]) < 2 or error["loc"][0] != "rules"]
        raise RulesError(source, problems) from None
    names = {rule.name for rule in ruleset.rules}
    problems += [f"exemptions.{index}.rules: unknown rule '{name}'"
                 for index, item in enumerate(ruleset.exemptions) for name in item.rules or [] if name not in names]
    if problems:
        raise RulesError(source, problems)
    return ruleset


def _rule_problems(rules: Any) -> list[str]:
    """Check each rule on its own so every message can name its rule."""
    if not isinstance(rules, list):
        return [] if rules is None else ["rules: must be a list"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(rules):
        label = f"rule '{raw.get('name')}'" if isinstance(raw, dict) and raw.get("name") else f"rule #{index + 1}"
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            problems += [f"{label}: " + _message(e["loc"], e["msg"]) for e in exc.errors()]
            continue
        try:
            POLICY_PARAMS[rule.policy].model_validate(rule.params or {})
        except ValidationError as exc:
            problems += [f"{label}: " + _message(("params", *e["loc"]), e["msg"]) for e in exc.errors()]
        if rule.name in seen:
            problems.append(f"{label}: name: duplicate rule name")
        seen.add(rule.name)
    return problems


def _message(loc: tuple[Any, ...], msg: str) -> str:
    text = "unknown key" if msg == "Extra inputs are not permitted" else msg.removeprefix("Value error, ")
    path = ".".join(str(part) for part in loc)
    return f"{path}: {text}" if path else text
