"""The Taskwarden Flask application factory, ``create_app``, and nothing else.

Importing this module builds nothing: ``gunicorn -c config/gunicorn.py 'app:create_app()'`` and
``flask --app app ...`` call the factory, tests call ``create_app({"SETTINGS": {...}})``. The factory reads
the configuration and wires the parts; it connects to nothing and starts no thread (the web process starts
its background threads when it serves its first request).
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

import cli
import keys
import runtime
from config.settings import ConfigError
from handlers import intake
from handlers.refusals import unexpected_error
from handlers.spool import Spool
from logging_setup import configure_logging
from startup import exit_on_config_error, load_configuration
from web import admin, dashboard, health, prometheus


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
    settings, rules = load_configuration(**test_config.pop("SETTINGS", {}))
    rt = runtime.build_runtime(settings, rules)
    configure_logging(settings.log_format, settings.log_level, secrets=rt.portal.secrets)
    if not rules.rules:
        structlog.get_logger(__name__).warning("rules.empty", rules_file=settings.rules_file,
                                               hint="nothing is enforced until the rules file has a rule")

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=intake.MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.config.update(test_config)
    app.extensions["taskwarden"] = rt
    app.extensions["taskwarden_spool"] = spool = Spool(settings.spool_dir, lambda d: keys.spool_mark(rt.portal.id, d))
    for blueprint in (health.bp, admin.bp, prometheus.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = intake.IntakeMiddleware(app.wsgi_app, rt, spool)  # type: ignore[method-assign]
    dashboard.init_app(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(structlog.contextvars.clear_contextvars)
    app.teardown_request(lambda _exc: structlog.contextvars.clear_contextvars())
    cli.init_app(app)
    return app


def _http_error(error: HTTPException) -> tuple[Response, int]:
    code = error.code or 500
    return jsonify(status="error", error=(error.name or "error").lower().replace(" ", "_")), code


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    status, body = unexpected_error(error)
    return jsonify(body), status
