"""What an operator's command says when something it needs is not there: one line naming the cause and
what to check, exit status 1, never a traceback. Bugs still show their traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
from flask import current_app
from redis.exceptions import RedisError

import redis_connect
from bitrix.errors import AuthError, BitrixError, TransportError
from logging_setup import redact_text


def operator_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command's callback: Redis and portal failures become one line on stderr and exit 1."""
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except RedisError as exc:
            variable = "REDIS_SENTINELS" if _settings().sentinel_addresses else "REDIS_URL"
            _fail(f"Redis at {_redis_address()} does not answer ({type(exc).__name__}): check {variable} and that "
                  "Redis is running")
        except TransportError as exc:
            _fail(f"the portal does not answer ({redact_text(exc.description or exc.code)}): check "
                  f"{_portal_variable()} and the network")
        except AuthError as exc:
            _fail(f"the portal refused our credentials ({exc.code}): check {_portal_variable()} (its secret, and "
                  "that the webhook has the task scope)")
        except BitrixError as exc:
            _fail(f"the portal answered an error: {redact_text(str(exc))}")
    return run


def _fail(line: str) -> NoReturn:
    click.echo(f"taskwarden: {line}", err=True)
    raise SystemExit(1)


def _settings() -> Any:
    return current_app.extensions["taskwarden"].settings


def _redis_address() -> str:
    """host:port/db of REDIS_URL (or the Sentinels and master), without a password."""
    if _settings().sentinel_addresses:
        return redis_connect.describe(_settings())
    parts = urlsplit(_settings().redis_url)
    return f"{parts.hostname or parts.path}:{parts.port or 6379}{parts.path if parts.hostname else ''}"


def _portal_variable() -> str:
    settings = current_app.extensions["taskwarden"].settings
    return "SANDBOX_URL (is the sandbox running?)" if settings.uses_sandbox else "B24_WEBHOOK_URL"
