"""structlog configured once for every process, with secrets redacted as the very last step.

Redaction sits after the exception renderer on purpose: a ``requests`` error carries the webhook URL
(with its secret) in its message and traceback, and only the rendered text can be scrubbed whole.

Our own lines go from structlog straight to the output: routing them through stdlib ``logging`` as well
cost intake several times the line itself. Lines of other libraries' stdlib loggers
(rq, gunicorn, urllib3) go through a ``ProcessorFormatter`` with the same redaction and renderer. Both
write through the root handler, under its lock, so lines never interleave.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

_SECRET_KEY_RE = re.compile(r"token|secret|password|passwd|^auth$|authorization|webhook_url", re.IGNORECASE)
_WEBHOOK_PATH_RE = re.compile(r"(/rest/(?:api/)?\d+/)[^/\s'\"]+")
MASK = "***"

_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Remember exact secret values (webhook code, application token) to mask wherever they appear."""
    _known_secrets.update(value for value in values if value and len(value) >= 4)


def redact_text(text: str) -> str:
    """Mask webhook path secrets and every registered secret inside a string."""
    if "/rest/" in text:
        text = _WEBHOOK_PATH_RE.sub(rf"\1{MASK}", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: MASK if _is_secret_key(str(k)) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and secret-looking text in every value."""
    return {key: MASK if _is_secret_key(key) else _redact_value(value)
            for key, value in event_dict.items()}


@lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    """Cached: the same few dozen key names come back on every line."""
    return _SECRET_KEY_RE.search(key) is not None


_handler = logging.StreamHandler(sys.stdout)
"""The root handler: every line, ours and other libraries', is written through its stream and lock."""


class LineLogger:
    """structlog's final logger: writes each rendered line through the root handler's stream and lock."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or ""  # read by add_logger_name

    def msg(self, line: str) -> None:
        with _handler.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                _handler.stream.write(line + "\n")
                _handler.stream.flush()
            except (OSError, ValueError):  # a broken or closed stdout must not fail the request that logged,
                pass  # as stdlib's handlers never do

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(log_format: str = "json", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route structlog and stdlib loggers (rq, gunicorn, werkzeug) through one redacting renderer."""
    register_secrets(secrets)
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False)
                     if log_format == "console" else structlog.processors.JSONRenderer(serializer=render_json))
    final = [structlog.processors.format_exc_info,  # traceback to text (no frame locals) ...
             redact,  # ... so that redaction sees it, last before the renderer
             renderer]
    structlog.configure(
        processors=[*_SHARED, structlog.processors.StackInfoRenderer(), *final],
        logger_factory=LineLogger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    _handler.setStream(sys.stdout)
    _handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    ))
    root = logging.getLogger()
    root.handlers[:] = [_handler]
    root.setLevel(level)
    for name in ("rq", "rq.worker", "gunicorn", "gunicorn.error", "gunicorn.access", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("urllib3").setLevel(max(root.level, logging.WARNING))  # per-connection chatter


def render_json(event_dict: EventDict, **_: Any) -> str:
    """One log line as JSON: orjson (a fifth of ``json.dumps``'s time), anything it cannot take as text."""
    try:
        return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer over 64 bits
        return json.dumps(event_dict, default=repr)


@contextmanager
def capture_output() -> Iterator[io.StringIO]:
    """Every rendered line, ours and stdlib's, into a buffer instead of stdout (for tests)."""
    buffer = io.StringIO()
    previous = _handler.setStream(buffer)
    try:
        yield buffer
    finally:
        _handler.setStream(previous or sys.stdout)


def log_to_stderr() -> None:
    """Send every line to stderr: a command's own output (a table, a summary) keeps stdout to itself."""
    _handler.setStream(sys.stderr)
