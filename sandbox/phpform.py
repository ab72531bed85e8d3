"""PHP-style form encoding: `parse_str` with nested bracket keys, and its inverse.

Bitrix24 is PHP: query strings and form bodies are read with `parse_str`, so
`fields[TITLE]=x&select[]=ID&select[]=TITLE` is a nested array (reference §2.2), and outbound
events are written with `http_build_query` (§1.1). Key order is kept, because the old `task.*`
methods bind their arguments by position (§7.1).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

_SEGMENT = re.compile(r"\[([^\]]*)\]")


def parse_str(query: str) -> dict[str, Any]:
    """Decode a query string or form body the way PHP's `parse_str` does.

    Lists are returned for arrays whose keys are exactly 0..n-1 in order (PHP has one array type;
    this is the Python shape that reads naturally). Everything else stays a dict in wire order.
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(query, keep_blank_values=True):
        _assign(root, raw_key, value)
    return {key: normalize(value) for key, value in root.items()}


def _assign(root: dict[str, Any], raw_key: str, value: str) -> None:
    bracket = raw_key.find("[")
    if bracket <= 0:
        root[raw_key] = value
        return
    path = [raw_key[:bracket], *_SEGMENT.findall(raw_key[bracket:])]
    node = root
    for depth, segment in enumerate(path):
        if segment == "" and depth > 0:
            segment = str(_next_index(node))
        if depth == len(path) - 1:
            node[segment] = value
            return
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child


def _next_index(node: dict[str, Any]) -> int:
    numbers = [int(key) for key in node if key.lstrip("-").isdigit()]
    return max(numbers) + 1 if numbers else 0


def normalize(value: Any) -> Any:
    """Turn dicts keyed "0".."n-1" (in order) into lists, recursively."""
    if isinstance(value, dict):
        items = {key: normalize(item) for key, item in value.items()}
        if items and list(items) == [str(index) for index in range(len(items))]:
            return list(items.values())
        return items
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested data as `http_build_query` pairs: `[("data[FIELDS_AFTER][ID]", "8017"), ...]`."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            pairs.extend(flatten(value, name))
        elif isinstance(value, list):
            pairs.extend(flatten({str(index): item for index, item in enumerate(value)}, name))
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def build_query(data: dict[str, Any]) -> str:
    """Encode nested data like PHP `http_build_query` (brackets percent-encoded)."""
    return urlencode(flatten(data))


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
