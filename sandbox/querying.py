"""List filters and ordering shared by `tasks.task.list` and `task.elapseditem.getlist`.

Filter keys carry an operator prefix (`!`, `<`, `<=`, `>`, `>=`); a list value means IN (with
`!`, NOT IN) — reference §6.2 and §7.4. Values are coerced per field before comparing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<=", ">=", "!", "<", ">")


@dataclass(frozen=True)
class Condition:
    """One filter term: `field <op> value`, where value may be a tuple for IN."""

    field: str
    op: str
    value: Any


def split_key(key: str) -> tuple[str, str]:
    """`">=CREATED_DATE"` → `(">=", "CREATED_DATE")`; no prefix is `"="`."""
    for op in OPERATORS:
        if key.startswith(op):
            return op, key[len(op):]
    return "=", key


def compile_filter(filter_: dict[str, Any], coerce: Callable[[str, Any], Any],
                   known: Iterable[str]) -> list[Condition]:
    """Conditions for the known fields; unknown fields are ignored, as the list methods do."""
    known_set = set(known)
    conditions = []
    for key, raw in filter_.items():
        op, field = split_key(str(key))
        field = field.upper()
        if field not in known_set and not field.startswith("UF_"):
            continue
        if isinstance(raw, list | tuple | dict):
            items = raw.values() if isinstance(raw, dict) else raw
            value: Any = tuple(coerce(field, item) for item in items)
        else:
            value = coerce(field, raw)
        conditions.append(Condition(field, op, value))
    return conditions


def matches(record: dict[str, Any], conditions: list[Condition]) -> bool:
    """True when the record passes every condition."""
    return all(_passes(record.get(condition.field), condition) for condition in conditions)


def _passes(actual: Any, condition: Condition) -> bool:
    wanted = condition.value
    if isinstance(wanted, tuple):
        hit = any(_compare(actual, "=", item) for item in wanted)
        return not hit if condition.op == "!" else hit
    return _compare(actual, condition.op, wanted)


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if op in ("=", "!"):
        equal = actual == wanted or (_empty(actual) and _empty(wanted))
        return equal if op == "=" else not equal
    if actual is None or wanted is None:
        return False
    try:
        if op == "<":
            return bool(actual < wanted)
        if op == "<=":
            return bool(actual <= wanted)
        if op == ">":
            return bool(actual > wanted)
        return bool(actual >= wanted)
    except TypeError:
        return False


def _empty(value: Any) -> bool:
    return value is None or value == "" or value is False


def sort_records(records: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort; `(field, descending)` pairs; NULLs first ascending, like MySQL."""
    result = list(records)
    for field, descending in reversed(order):
        result.sort(key=_key_of(field), reverse=descending)
    return result


def _key_of(field: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda record: _sort_key(record.get(field))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (2, value)
    return (1, value)


def parse_order(order: Any, allowed: Iterable[str]) -> list[tuple[str, bool]] | None:
    """`{FIELD: "asc"|"desc"}` → pairs; None when a field is not allowed."""
    if not isinstance(order, dict):
        return []
    allowed_set = set(allowed)
    pairs = []
    for field, direction in order.items():
        name = str(field).upper()
        if name not in allowed_set and not name.startswith("UF_"):
            return None
        pairs.append((name, str(direction).lower() == "desc"))
    return pairs


def candidates(by_id: dict[int, dict[str, Any]], conditions: list[Condition]) -> Iterable[dict[str, Any]]:
    """Records that may match: only the ID range the conditions allow, when that is narrower than all.

    A speed-up for ID-window paging over large seeds; `matches` still decides every record.
    """
    listed = [c.value for c in conditions if c.field == "ID" and c.op == "=" and isinstance(c.value, tuple)]
    if listed:  # ID IN (...): look those up directly
        return [by_id[i] for i in listed[0] if isinstance(i, int) and i in by_id]
    lo, hi = 0, max(by_id, default=0)
    for condition in conditions:
        if condition.field != "ID" or isinstance(condition.value, tuple) or not isinstance(condition.value, int):
            continue
        value = condition.value
        if condition.op in (">", ">="):
            lo = max(lo, value + (condition.op == ">"))
        elif condition.op in ("<", "<="):
            hi = min(hi, value - (condition.op == "<"))
        elif condition.op == "=":
            lo, hi = max(lo, value), min(hi, value)
    if hi - lo + 1 >= len(by_id):
        return by_id.values()
    return [by_id[i] for i in range(lo, hi + 1) if i in by_id]
