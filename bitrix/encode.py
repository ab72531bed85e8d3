"""PHP-style form encoding (``http_build_query``), for the command strings inside ``batch``.

A batch command is ``method?query`` and the portal reads the query with PHP's ``parse_str``, so
nested values use bracket keys and every value is URL-encoded inside the string (reference 4).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus


def build_query(params: dict[str, Any] | list[Any]) -> str:
    """Encode params as PHP would read them back, keeping the order of keys and list items.

    Empty lists and dicts become ``key[]=``: PHP cannot express an empty array in a form, and the
    old ``task.*`` methods read ``[0 => '']`` as empty, which keeps later positions in place.
    """
    pairs: list[str] = []
    items = enumerate(params) if isinstance(params, list) else params.items()
    for key, value in items:
        _flatten(quote_plus(str(key)), value, pairs)
    return "&".join(pairs)


def _flatten(prefix: str, value: Any, pairs: list[str]) -> None:
    if isinstance(value, dict | list | tuple):
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        if not items:
            pairs.append(f"{prefix}%5B%5D=")
        for key, item in items:
            _flatten(f"{prefix}%5B{quote_plus(str(key))}%5D", item, pairs)
    elif value is None:
        return  # PHP's http_build_query skips nulls
    elif isinstance(value, bool):
        pairs.append(f"{prefix}={int(value)}")
    else:
        pairs.append(f"{prefix}={quote_plus(str(value))}")


def command(method: str, params: dict[str, Any] | list[Any] | None) -> str:
    """One batch command string, ``method?query``."""
    return f"{method}?{build_query(params)}" if params else method
