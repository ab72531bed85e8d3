"""The sandbox portal as a Flask app.

`sandbox.methods` is imported for its side effect: it fills the method tables.
"""

from __future__ import annotations

from flask import Flask, request

import sandbox.methods  # noqa: F401
from sandbox import app_rest, control_api, control_apps, oauth, rest, seed, ufdefs
from sandbox.apps import Apps
from sandbox.config import SandboxConfig
from sandbox.store import Portal


def create_sandbox_app(config: SandboxConfig, seed_name: str | int | None = None) -> Flask:
    """A fresh portal with `config` as its startup settings, system userfields, optional seed; plus the
    application-mode portals `config.portals` names, the OAuth server, and their control API."""
    app = Flask("sandbox")
    the_portal = Portal(startup=config, config=config)
    ufdefs.install_system_fields(the_portal)
    seed.apply(the_portal, seed_name)
    apps = Apps(the_portal)
    apps.reset()
    app.extensions["sandbox_portal"] = the_portal
    app.extensions["sandbox_apps"] = apps
    app.register_blueprint(rest.bp)
    app.register_blueprint(control_api.bp)
    app.register_blueprint(app_rest.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(control_apps.bp)

    @app.before_request
    def _remember_endpoint() -> None:
        # Events name the portal as clients reach it (auth[client_endpoint]).
        the_portal.client_endpoint = request.host_url + "rest/"
        apps.server.base_url = request.host_url.rstrip("/")

    app.before_request(control_apps.select_portal)
    return app
