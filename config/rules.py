"""The rules file (SPEC section 5): YAML loaded with ``safe_load`` and validated by pydantic models.

Errors name the rule and the key (``rule 'cap-time-entries': params.max_seconds: ...``) so an
administrator can fix the file without reading a traceback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
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
SweepKind = Literal["entries", "tasks", "full"]
SWEEP_KINDS: tuple[SweepKind, ...] = ("entries", "tasks", "full")
"""The sweeps (SPEC section 6): new time entries, changed tasks, everything."""
DEFAULT_SWEEPS: dict[SweepKind, str] = {"entries": "* * * * *", "tasks": "*/15 * * * *", "full": "0 3 * * *"}
ParamModels = Mapping[str, type[BaseModel]]
"""A policy's name to its params model: the policies' registry hands it in, so this module imports none."""


class RulesError(ConfigError):
    """A rules file that cannot be used; ``problems`` lists every finding, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"rules file {source}: " + "; ".join(problems))


class StrictModel(BaseModel):
    """Unknown keys are errors and values never change after loading: the base of every rules-file model,
    policies' params included."""

    model_config = ConfigDict(extra="forbid", frozen=True)


IdList = list[PositiveInt]


class Match(StrictModel):
    """Which tasks a rule applies to: AND of the keys given, OR within each list."""

    group_id: IdList | None = None
    responsible_id: IdList | None = None
    created_by: IdList | None = None
    status: list[int] | None = None

    @field_validator("group_id", "responsible_id", "created_by", "status", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class Rule(StrictModel):
    """One named rule: a policy, its parameters, and where and when it applies."""

    name: str = Field(pattern=r"^[a-z0-9-]+$", max_length=64)
    policy: str
    mode: Literal["enforce", "audit"] = "enforce"
    events: tuple[Literal["ONTASKADD", "ONTASKUPDATE"], ...] = ("ONTASKADD", "ONTASKUPDATE")
    match: Match = Match()
    sweep: bool = True
    params: Any = None

    @field_validator("events", mode="before")
    @classmethod
    def _upper_events(cls, value: Any) -> Any:
        return [str(v).upper() for v in value] if isinstance(value, list) else value


class Exemption(StrictModel):
    """Tasks left alone: every key given must fit (task ids, group ids, which rules, until when)."""

    task_id: IdList | None = None
    group_id: IdList | None = None
    rules: list[str] | None = None
    until: dt.date | None = None


class Holidays(StrictModel):
    """Public holidays from the ``holidays`` package plus dates of the portal's own."""

    country: str | None = None
    subdivision: str | None = None
    extra: list[dt.date] = []

    @model_validator(mode="after")
    def _known_calendar(self) -> Holidays:
        check_holiday_region(self.country, self.subdivision)
        return self


def check_holiday_region(country: str | None, subdivision: str | None) -> None:
    """Refuse a country or subdivision the ``holidays`` package does not know, naming it (ValueError)."""
    if country is None:
        if subdivision is not None:
            raise ValueError("subdivision needs a country")
        return
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ValueError(f"unknown holiday country '{country}'")
    if subdivision is not None and subdivision not in supported[country]:
        raise ValueError(f"unknown subdivision '{subdivision}' for country '{country}'")


class RuleSet(StrictModel):
    """A validated rules file."""

    timezone: str = "UTC"
    holidays: Holidays = Holidays()
    sweeps: dict[SweepKind, str] = DEFAULT_SWEEPS
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

    @cached_property
    def digest(self) -> str:
        """Names this rule set's content (12 hex digits): two processes with equal digests run the same rules."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def params(self, rule: Rule) -> Any:
        """The rule's parameters as their policy's model (validated at load)."""
        return rule.params


def load_rules(path: str | Path, policies: ParamModels) -> RuleSet:
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
        raise RulesError(source, [f"not valid YAML: {_yaml_problem(exc)}"]) from None
    return parse_rules(raw if raw is not None else {}, policies, source)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: where in the file, and what (PyYAML's own text spans lines and names no file)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{where}{problem}"


def parse_rules(raw: Any, policies: ParamModels, source: str = "<rules>") -> RuleSet:
    """Validate already-parsed YAML; see :func:`load_rules`."""
    if not isinstance(raw, dict):
        raise RulesError(source, ["the top level must be a mapping"])
    problems, params = _rule_problems(raw.get("rules"), policies)
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
    rules = [rule.model_copy(update={"params": params[rule.name]}) for rule in ruleset.rules]
    return ruleset.model_copy(update={"rules": rules})


def _rule_problems(rules: Any, policies: ParamModels) -> tuple[list[str], dict[str, BaseModel]]:
    """Check each rule on its own so every message can name its rule; returns the problems and, by rule
    name, the params as their policy's model."""
    if not isinstance(rules, list):
        return ([] if rules is None else ["rules: must be a list"]), {}
    problems: list[str] = []
    params: dict[str, BaseModel] = {}
    seen: set[str] = set()
    for index, raw in enumerate(rules):
        label = f"rule '{raw.get('name')}'" if isinstance(raw, dict) and raw.get("name") else f"rule #{index + 1}"
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            problems += [f"{label}: " + _message(e["loc"], e["msg"]) for e in exc.errors()]
            continue
        if rule.policy not in policies:
            problems.append(f"{label}: policy: unknown policy '{rule.policy}' (known: {', '.join(policies)})")
            continue
        try:
            params[rule.name] = policies[rule.policy].model_validate(rule.params or {})
        except ValidationError as exc:
            problems += [f"{label}: " + _message(("params", *e["loc"]), e["msg"]) for e in exc.errors()]
        if rule.name in seen:
            problems.append(f"{label}: name: duplicate rule name")
        seen.add(rule.name)
    return problems, params


def _message(loc: tuple[Any, ...], msg: str) -> str:
    text = "unknown key" if msg == "Extra inputs are not permitted" else msg.removeprefix("Value error, ")
    path = ".".join(str(part) for part in loc)
    return f"{path}: {text}" if path else text
