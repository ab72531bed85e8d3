"""Argument binding of the old `task.*` methods: by position, checked against a manifest.

A faithful port of `CTaskRestService::_parseRestParams` (reference §7.1): keys are thrown away,
values are taken in order, each position is type-checked, array params may only carry allowed
keys (filter keys may have operator prefixes), and `[""]` counts as an empty array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox import dates
from sandbox.errors import TE_WRONG_ARGUMENTS, core_error, tasks_exception

_LAX_INTEGER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Param:
    """One manifest position."""

    name: str
    type: str
    allowed_keys: tuple[str, ...] | None = None
    key_prefixes: tuple[str, ...] = ()
    allowed_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Signature:
    """A method's manifest entry, e.g. `ctaskelapseditem::add`."""

    cls: str
    method: str
    params: tuple[Param, ...]
    mandatory: int = 0
    date_keys: tuple[str, ...] = ()


def is_lax_integer(value: Any) -> bool:
    """`CTaskAssert::isLaxIntegers`: an int, or a string of digits."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and bool(_LAX_INTEGER.match(value)))


def bind(signature: Signature, values: list[Any], server_tz: str) -> list[Any]:
    """Check `values` against the manifest and return them parsed.

    Raises:
        RestError: ERROR_CORE `TASKS_ERROR_EXCEPTION_#256; ...; 256/TE/WRONG_ARGUMENTS<br>`.
    """
    out: list[Any] = []
    for index, param in enumerate(signature.params):
        if index >= len(values):
            if index < signature.mandatory:
                raise _wrong(signature, index, param, "expected by method {m}(), but not given.")
            break
        out.append(_check(signature, index, param, values[index], server_tz))
    return out


def _wrong(signature: Signature, index: int, param: Param, tail: str) -> Exception:
    where = f"{signature.cls}::{signature.method}"
    prefix = f"Param #{index} ({param.name})"
    text = tail.format(m=where)
    if not tail.startswith("expected by method"):
        text = f"for method {where}() {text}"
    return tasks_exception(TE_WRONG_ARGUMENTS, f"{prefix} {text}")


def _check(signature: Signature, index: int, param: Param, value: Any, server_tz: str) -> Any:
    if param.type == "integer":
        if not is_lax_integer(value):
            raise _wrong(signature, index, param, 'expected to be of type "integer", but given something else.')
        return int(value)
    if not isinstance(value, dict | list):
        raise _wrong(signature, index, param, 'expected to be of type "array", but given something else.')
    items = dict(value) if isinstance(value, dict) else {str(i): item for i, item in enumerate(value)}
    if param.allowed_keys is not None:
        items = _check_keys(signature, index, param, items, server_tz)
        return items
    if param.allowed_values is not None:
        for item in items.values():
            text = item if isinstance(item, str) else str(item)
            if text not in param.allowed_values:
                raise _wrong(signature, index, param, f'must not contain value "{text}".')
    return value if isinstance(value, list) else items


def _check_keys(signature: Signature, index: int, param: Param, items: dict[str, Any],
                server_tz: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, item in items.items():
        if str(key) == "0" and item in ("", None):
            continue  # the way to send an empty array in form encoding
        bare = str(key)
        for prefix in param.key_prefixes:
            bare = bare.replace(prefix, "")
        if bare not in param.allowed_keys:  # type: ignore[operator]
            raise _wrong(signature, index, param, f'must not contain key "{key}".')
        if bare in signature.date_keys and str(item).lower() not in ("asc", "desc"):
            item = _date(item, server_tz)
        checked[str(key)] = item
    return checked


def _date(value: Any, server_tz: str) -> Any:
    if isinstance(value, list):
        return [_date(item, server_tz) for item in value]
    try:
        return dates.parse(value, server_tz)
    except dates.BadDate:
        raise core_error("TASKS_ERROR_ASSERT_EXCEPTION") from None
