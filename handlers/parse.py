"""Event bodies to :class:`Event`: PHP-style form bodies exactly as Bitrix24 sends them, or JSON.

Pure functions, no Flask. Limits keep hostile bodies cheap to refuse: a field count checked before
splitting, a key length checked before parsing brackets, a nesting depth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from handlers.refusals import MalformedEvent, UnsupportedMediaType

MAX_FIELDS = 200
"""A real task event has about 15 fields; far more is not an event."""
MAX_KEY_LENGTH = 200
MAX_DEPTH = 6
"""``data[FIELDS_AFTER][ID]`` is three levels; nothing Bitrix24 sends goes deeper than four."""
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class Event:
    """A Bitrix24 outbound event, reduced to what intake needs. The token is kept out of ``repr``."""

    name: str
    task_id: int | None
    ts: str = ""
    handler_id: str = ""
    member_id: str | None = None
    application_token: str | None = field(default=None, repr=False)
    bad_task_id: bool = False
    """An ``ID`` was sent but is not a task id (``abc``, ``0``, a negative number...)."""
    clean: bool = False
    """``data[CLEAN]`` of an uninstall: the administrator asked for the application's data to be deleted."""

    @property
    def event_id(self) -> str:
        """Names the event in logs and the audit (not a dedup key: two changes in one second look alike)."""
        return f"{self.name}:{self.task_id or '-'}:{self.ts or '-'}:{self.handler_id or '-'}"

    @classmethod
    def from_request(cls, content_type: str, body: bytes) -> Event:
        """Parse a body of the given media type (without parameters such as ``charset``).

        Raises:
            UnsupportedMediaType: neither form nor JSON.
            MalformedEvent: undecodable, over the limits, or without an event name.
        """
        if content_type == FORM:
            payload = parse_form(body)
        elif content_type == JSON:
            payload = parse_json(body)
        else:
            raise UnsupportedMediaType(f"send {FORM} or {JSON}")
        return event_from_payload(payload)


def parse_form(body: bytes) -> dict[str, Any]:
    """``a[b][c]=1&list[]=x`` to nested dicts and lists, as PHP would read it.

    Splits exactly like ``parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)``, but
    decodes each key once per process: Bitrix24 sends the same dozen bracketed keys in every event,
    and unquoting and splitting them was most of the parse time.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("body is not UTF-8") from None
    if text and text.count("&") >= MAX_FIELDS:
        raise MalformedEvent(f"more than {MAX_FIELDS} fields")
    tree: dict[str, Any] = {}
    for pair in text.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            _insert(tree, _key_parts(key), _unquote(value))
    return tree


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedEvent("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("JSON body must be an object")
    if _depth(payload) > MAX_DEPTH:
        raise MalformedEvent(f"nested deeper than {MAX_DEPTH} levels")
    return payload


def event_from_payload(payload: dict[str, Any]) -> Event:
    """Pick the event name, task id, ts, handler id and auth fields out of a decoded body."""
    name = payload.get("event")
    if not isinstance(name, str) or not name.strip():
        raise MalformedEvent("no event name")
    raw_auth = payload.get("auth")
    auth: dict[str, Any] = raw_auth if isinstance(raw_auth, dict) else {}
    task_id, sent = _task_id(payload.get("data"))
    return Event(name=name.strip().upper()[:64], task_id=task_id,
                 ts=_text(payload.get("ts")), handler_id=_text(payload.get("event_handler_id")),
                 member_id=_text(auth.get("member_id")) or None,
                 application_token=_text(auth.get("application_token")) or None,
                 bad_task_id=task_id is None and sent,
                 clean=isinstance(payload.get("data"), dict) and str(payload["data"].get("CLEAN", "0")) in ("1", "Y"))


def _task_id(data: Any) -> tuple[int | None, bool]:
    """``FIELDS_AFTER[ID]`` (or ``FIELDS_BEFORE[ID]``); either may be the literal string ``undefined``.
    Returns the id (None when there is no usable one) and whether any ID was sent at all."""
    sent = False
    if not isinstance(data, dict):
        return None, sent
    for part in ("FIELDS_AFTER", "FIELDS_BEFORE"):
        fields = data.get(part)
        if isinstance(fields, dict) and "ID" in fields:
            sent = True
            raw = fields.get("ID")
            if isinstance(raw, int | str) and str(raw).isascii() and str(raw).isdigit() and 0 < int(raw) < 2**31:
                return int(raw), sent
    return None, sent


@lru_cache(maxsize=512)
def _key_parts(raw_key: str) -> tuple[str, ...]:
    """A raw (still percent-encoded) form key to its bracket parts; cached, since keys repeat."""
    return tuple(_split_key(_unquote(raw_key)))


def _unquote(text: str) -> str:
    """``parse_qsl``'s decoding of one name or value: ``+`` is a space, then %-escapes as UTF-8."""
    if "%" not in text and "+" not in text:
        return text
    return _unquote_escaped(text) if len(text) <= MAX_KEY_LENGTH else _decode(text)


@lru_cache(maxsize=1024)
def _unquote_escaped(text: str) -> str:
    """Cached for short texts: a portal's endpoint URLs come escaped, and the same, in every event."""
    return _decode(text)


def _decode(text: str) -> str:
    return unquote(text.replace("+", " "), encoding="utf-8", errors="replace")


def _split_key(key: str) -> list[str]:
    if len(key) > MAX_KEY_LENGTH:
        raise MalformedEvent(f"a key is longer than {MAX_KEY_LENGTH} characters")
    match = _KEY_RE.match(key)
    if match is None:
        return [key]  # no valid bracket syntax: PHP keeps such a key flat too
    parts = [match[1], *_PART_RE.findall(match[2])]
    if len(parts) > MAX_DEPTH:
        raise MalformedEvent(f"nested deeper than {MAX_DEPTH} levels")
    return parts


def _insert(tree: dict[str, Any], parts: tuple[str, ...], value: str) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part) if part else None
        if not isinstance(child, dict):
            child = {}
            node[part or str(len(node))] = child
        node = child
    last = parts[-1]
    node[last or str(len(node))] = value


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else str(value) if isinstance(value, int) else ""
