"""structlog configured once for every process, with secrets redacted as the very last step.

Redaction sits after the exception renderer on purpose: a ``requests`` error carries the webhook URL
(with its secret) in its message and traceback, and only the rendered text can be scrubbed whole.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

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
    text = _WEBHOOK_PATH_RE.sub(rf"\1{MASK}", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: MASK if _SECRET_KEY_RE.search(str(k)) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and secret-looking text in every value."""
    return {key: MASK if _SECRET_KEY_RE.search(key) else _redact_value(value)
            for key, value in event_dict.items()}


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(log_format: str = "json", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route structlog and stdlib loggers (rq, gunicorn, werkzeug) through one redacting renderer."""
    register_secrets(secrets)
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False)
                     if log_format == "console" else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # traceback to text (no frame locals) ...
            redact,  # ... so that redaction sees it, last before the renderer
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("rq", "rq.worker", "gunicorn", "gunicorn.error", "gunicorn.access", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("urllib3").setLevel(max(root.level, logging.WARNING))  # per-connection chatter

