"""Classic ``batch``: up to 50 commands in one HTTP request, each with its own result or error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bitrix.decode import error_from_envelope
from bitrix.encode import command as encode_command
from bitrix.errors import BitrixError

MAX_COMMANDS = 50
"""The portal executes at most 50 commands per batch; the rest would fail one by one."""


@dataclass(frozen=True)
class Command:
    """One method call, to be sent alone or inside a batch. ``params`` is a list for positional methods.

    A REST 3.0 command (``v3=True``) cannot travel in a classic batch; ``fallback`` is the classic
    command to use on a portal that has no v3 API.
    """

    method: str
    params: dict[str, Any] | list[Any] | None = None
    v3: bool = False
    fallback: Command | None = None


@dataclass
class BatchResult:
    """Per-command results and errors, keyed like the commands that were sent."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BitrixError] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    times: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merge(self, other: BatchResult) -> None:
        self.results.update(other.results)
        self.errors.update(other.errors)
        self.totals.update(other.totals)
        self.times.update(other.times)


def batch_params(commands: Mapping[str, Command], halt: bool = False) -> dict[str, Any]:
    """The JSON body of one batch request (inner strings URL-encoded once, JSON not encoded again)."""
    if len(commands) > MAX_COMMANDS:
        raise ValueError(f"a batch carries at most {MAX_COMMANDS} commands, got {len(commands)}")
    return {"halt": int(halt), "cmd": {key: encode_command(c.method, c.params) for key, c in commands.items()}}


def parse_batch(commands: Mapping[str, Command], result: Any) -> BatchResult:
    """Split a batch answer's ``result`` into per-command results and typed errors.

    Empty collections arrive as ``[]`` (a PHP empty array), so every part is read through ``_as_map``.
    """
    body = result if isinstance(result, dict) else {}
    parsed = BatchResult(
        results=_as_map(body.get("result")),
        totals={k: int(v) for k, v in _as_map(body.get("result_total")).items() if _is_int(v)},
        times={k: v for k, v in _as_map(body.get("result_time")).items() if isinstance(v, dict)},
    )
    for key, error in _as_map(body.get("result_error")).items():
        method = commands[key].method if key in commands else "batch"
        parsed.errors[key] = error_from_envelope(method, error if isinstance(error, dict) else {"error": error})
        parsed.results.pop(key, None)
    return parsed


def chunks(commands: Mapping[str, Command], size: int = MAX_COMMANDS) -> Iterator[dict[str, Command]]:
    """Split commands into batches of at most ``size``, keeping their order."""
    items = list(commands.items())
    for start in range(0, len(items), size):
        yield dict(items[start:start + size])


def _as_map(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):  # numeric keys 0..n-1 may come back as a JSON list
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True
