"""The Taskwarden Flask application factory, ``create_app``, and nothing else.

Importing this module builds nothing: ``gunicorn -c config/gunicorn.py 'app:create_app()'`` and
``flask --app app ...`` call the factory, tests call ``create_app({"SETTINGS": {...}})``.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

import keys
import metrics
import runtime
from config import cli as rules_cli
from config.settings import ConfigError, load_settings
from handlers import admin, dashboard, health, intake
from handlers import metrics as metrics_view
from handlers.spool import Spool
from logging_setup import configure_logging
from startup import exit_on_config_error
from workers import cli as worker_cli


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``test_config["SETTINGS"]`` overrides environment settings by field name.

    Called without ``test_config`` (gunicorn, ``flask --app app``), unusable configuration ends the process
    with one line naming the variable or rules-file key; with it (tests), ``ConfigError`` is raised.
    """
    if test_config is None:
        try:
            return _build_app({})
        except ConfigError as exc:
            exit_on_config_error(exc)
    return _build_app(dict(test_config))


def _build_app(test_config: dict[str, Any]) -> Flask:
    settings = load_settings(**test_config.pop("SETTINGS", {}))
    rt = runtime.build_runtime(settings)
    configure_logging(settings.log_format, settings.log_level, secrets=rt.portal.secrets)
    runtime.install(rt)

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=intake.MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.config.update(test_config)
    app.extensions["taskwarden"] = rt
    app.extensions["taskwarden_spool"] = spool = Spool(settings.spool_dir, lambda d: keys.spool_mark(rt.portal.id, d))
    if spool.pending_files():  # left by a process that died while Redis was down
        spool.start_drainer(rt.redis, intake.queue_spooled(rt))
    metrics.start_flusher(rt.redis)
    for blueprint in (health.bp, admin.bp, metrics_view.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = intake.IntakeMiddleware(app.wsgi_app, rt, spool)  # type: ignore[method-assign]
    dashboard.init_app(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_bind_request_context)
    app.teardown_request(lambda _exc: structlog.contextvars.clear_contextvars())
    rules_cli.init_app(app)
    worker_cli.init_app(app)
    _init_sandbox_cli(app)
    return app


def _bind_request_context() -> None:
    structlog.contextvars.clear_contextvars()


def _http_error(error: HTTPException) -> tuple[Response, int]:
    code = error.code or 500
    return jsonify(status="error", error=(error.name or "error").lower().replace(" ", "_")), code


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    # A bug, not client input: logged with its traceback (redacted), answered without one.
    structlog.get_logger(__name__).exception("http.unexpected_error", error=type(error).__name__)
    return jsonify(status="error", error="internal_error"), 500


def _init_sandbox_cli(app: Flask) -> None:
    from sandbox.cli import sandbox_command

    app.cli.add_command(sandbox_command)

