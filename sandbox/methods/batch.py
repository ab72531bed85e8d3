"""Classic `batch` (reference §4): up to 50 `method?query` commands, `$result[...]` references."""

from __future__ import annotations

import re
from typing import Any

from sandbox import execute
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.decode import split_control
from sandbox.phpform import parse_str

MAX_LENGTH = 50
NOT_ALLOWED = frozenset({"batch", "upload", "download"})
_PATH = re.compile(r"\[([^\]]+)\]")


def php_truthy(value: Any) -> bool:
    """PHP truthiness: the string "false" is true; "", "0", 0, empty arrays are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def _reference_regex(keys: list[str]) -> re.Pattern[str]:
    return re.compile(r"\$(" + "|".join(re.escape(key) for key in keys) + r")([^\s]*)", re.IGNORECASE)


def substitute(value: Any, collections: dict[str, Any]) -> Any:
    """`processBatchStructure`: resolve references in keys and values, recursively."""
    if isinstance(value, dict):
        return {str(substitute(key, collections)): substitute(item, collections) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, collections) for item in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    return _element(value, collections)


def _element(query: str, collections: dict[str, Any]) -> Any:
    """`processBatchElement`: a whole-value reference gives the raw value, embedded ones scalars.

    A missing path is not an error: traversal stops at the last level that exists.
    """
    result: Any = query
    for match in _reference_regex(list(collections)).finditer(query):
        path = _PATH.findall(match.group(2))
        if not path:
            continue
        node: Any = collections[match.group(1).lower()]
        for key in path:
            child = _child(node, key)
            if child is None:
                break
            node = child
        if match.group(0) == query:
            return node
        if isinstance(node, bool) or not isinstance(node, str | int | float):
            continue
        result = str(result).replace(match.group(0), str(node))
    return result


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    return None


def _php_array(collection: dict[str, Any]) -> Any:
    """An empty PHP array is serialized as `[]`, a non-empty one as an object."""
    return collection if collection else []


@register(CLASSIC, "batch")
def batch(call: Call) -> Outcome:
    """Run each command in order; errors land in `result_error`, `halt` stops at the first."""
    commands = call.named("cmd")
    if isinstance(commands, list):
        commands = {str(index): item for index, item in enumerate(commands)}
    if not isinstance(commands, dict):
        commands = {}
    halt = php_truthy(call.named("halt", 0))
    out: dict[str, dict[str, Any]] = {name: {} for name in ("result", "error", "total", "next", "time")}
    for position, (key, command) in enumerate(commands.items()):
        if position >= MAX_LENGTH:
            out["error"][key] = {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                 "error_description": "Max batch length exceeded"}
            continue
        if not isinstance(command, str):
            continue
        if not _run_command(call, key, command, out) and halt:
            break
    return Outcome({"result": _php_array(out["result"]), "result_error": _php_array(out["error"]),
                    "result_total": _php_array(out["total"]), "result_next": _php_array(out["next"]),
                    "result_time": _php_array(out["time"])})


def _run_command(call: Call, key: str, command: str, out: dict[str, dict[str, Any]]) -> bool:
    """Execute one sub-call; False when it failed."""
    name, _, query = command.partition("?")
    name = name.strip().lower().removesuffix(".json")
    params, start = split_control(substitute(parse_str(query), out))
    record: dict[str, Any] = {"key": key, "method": name, "params": execute.log_params("classic", name, params),
                              "error": None}
    call.commands.append(record)
    answer = _answer(call, name, params, start)
    if answer.error is not None:
        record["error"] = answer.error
        out["error"][key] = answer.body
        return False
    out["result"][key] = answer.body["result"]
    for name_out in ("total", "next"):
        if name_out in answer.body:
            out[name_out][key] = answer.body[name_out]
    out["time"][key] = answer.body["time"]
    return True


def _answer(call: Call, name: str, params: dict[str, Any], start: int | None) -> execute.Answer:
    if name in NOT_ALLOWED:
        body = {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "error_description": "Method is not allowed for batch usage."}
        return execute.Answer(400, body, "ERROR_BATCH_METHOD_NOT_ALLOWED")
    fault = call.portal.take_fault(name, in_batch=True)
    if fault is not None:
        body = {"error": fault.error, "error_description": fault.description}
        return execute.Answer(fault.status, body, fault.error)
    return execute.run(call.portal, "classic", name, params, start)
