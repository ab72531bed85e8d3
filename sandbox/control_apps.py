"""The control API of application mode, under `/_sandbox/apps/` (JSON), and `?portal=` for the rest.

Creates and removes application-mode portals, plays the administrator (install, uninstall, revoking
tokens), shows what the app bound and what its offline queue holds, and injects failures of the OAuth
token endpoint. The data, request-log, event, fault and config endpoints of `control_api` act on an
application-mode portal when the request names it with `?portal=<name>` (`select_portal`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import apps, control_api, dates
from sandbox.apps import Apps, TokenFault, registry
from sandbox.appstate import AppState
from sandbox.control_api import ControlError
from sandbox.store import Portal

bp = Blueprint("sandbox_control_apps", __name__, url_prefix="/_sandbox/apps")
CONTROL_BLUEPRINT = "sandbox_control"


# The control API's own error answers: one JSON shape for both blueprints.
bp.register_error_handler(ControlError, control_api._control_error)
bp.register_error_handler(HTTPException, control_api._http_error)


def select_portal() -> Response | None:
    """Before a `control_api` request: with `?portal=<name>`, act on that application-mode portal.

    A change made this way counts as one hit of that portal. `/reset` always resets the whole sandbox,
    so naming a portal there is refused.
    """
    if request.blueprint != CONTROL_BLUEPRINT or "portal" not in request.args:
        return None
    name = request.args["portal"]
    if request.endpoint == f"{CONTROL_BLUEPRINT}.reset":
        return _refuse(400, "reset resets every portal; create a portal again to start it afresh")
    the_portal = registry().get(name)
    if the_portal is None or the_portal.app is None:
        return _refuse(404, f"portal {name!r} not found")
    if request.method in ("POST", "PATCH"):
        with the_portal.lock:
            the_portal.app.hit += 1
    g.sandbox_portal = the_portal
    return None


def _refuse(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _portal(name: str) -> Portal:
    found = registry().get(name)
    if found is None:
        raise ControlError(f"portal {name!r} not found", 404)
    return found


def _app(the_portal: Portal) -> AppState:
    if the_portal.app is None:
        raise ControlError("not an application-mode portal")
    return the_portal.app


def _info(the_apps: Apps) -> dict[str, Any]:
    config = the_apps.default.config
    return {"oauth_url": the_apps.server.oauth_url, "server_endpoint": the_apps.server.server_endpoint,
            "client_id": config.app_client_id, "client_secret": config.app_client_secret,
            "portals": [apps.summary(item) for item in the_apps.all()]}


@bp.get("")
def info() -> Response:
    """The OAuth server's URL, the application's credentials, and every portal."""
    return jsonify(_info(registry()))


@bp.post("/portals")
def add_portal() -> Response:
    """Create a portal: `{name, seed?, ...settings}` (rate, burst, access_ttl, offline_extended, ...)."""
    body = _body()
    name = str(body.pop("name", ""))
    seed_value = body.pop("seed", None)
    try:
        the_portal = registry().add(name, body, seed_value)
    except (TypeError, ValueError) as exc:
        raise ControlError(str(exc)) from exc
    return jsonify(apps.summary(the_portal))


@bp.route("/portals/<name>", methods=["GET", "DELETE"])
def portal_info(name: str) -> Response:
    """A portal's identity and state, or remove the portal."""
    if request.method == "DELETE":
        if not registry().remove(name):
            raise ControlError(f"portal {name!r} not found", 404)
        return jsonify(removed=True)
    return jsonify(apps.summary(_portal(name)))


@bp.post("/portals/<name>/tokens")
def tokens(name: str) -> Response:
    """Install without a callback and return a fresh token pair (an `auth` block)."""
    return jsonify(apps.issue_tokens(_portal(name)))


@bp.post("/portals/<name>/install")
def install(name: str) -> Response:
    """POST the installation callback to `{url}`; answers how the receiver answered."""
    url = _body().get("url")
    if not url:
        raise ControlError("url is required")
    return jsonify(apps.install(_portal(name), str(url)))


@bp.post("/portals/<name>/uninstall")
def uninstall(name: str) -> Response:
    """Uninstall `{clean, event}`: tokens revoked, bindings and queue gone, bound handlers told."""
    body = _body()
    try:
        deliveries = apps.uninstall(_portal(name), bool(body.get("clean", False)),
                                    str(body.get("event", "ONAPPUNINSTALL")))
    except ValueError as exc:
        raise ControlError(str(exc)) from exc
    return jsonify(deliveries=deliveries)


@bp.post("/portals/<name>/revoke-refresh")
def revoke_refresh(name: str) -> Response:
    """Every refresh token of the portal stops working (the next refresh gets `invalid_grant`)."""
    _app(_portal(name)).server.tokens.revoke(name, access=False)
    return jsonify(revoked=True)


@bp.post("/portals/<name>/expire-tokens")
def expire_tokens(name: str) -> Response:
    """Every access token of the portal expires now (REST answers `expired_token`)."""
    _app(_portal(name)).server.tokens.expire(name, time.time())
    return jsonify(expired=True)


@bp.post("/portals/<name>/application-token")
def application_token(name: str) -> Response:
    """Give the application a new `application_token` on this portal (`{token}` or a random one)."""
    the_portal = _portal(name)
    token = str(_body().get("token") or apps.new_application_token())
    with the_portal.lock:
        the_portal.configure({"application_token": token})
    return jsonify(application_token=token)


@bp.get("/portals/<name>/bindings")
def bindings(name: str) -> Response:
    """What the application bound, with ids and options."""
    the_portal = _portal(name)
    app = _app(the_portal)
    with the_portal.lock:
        return jsonify([{"id": b.id, "event": b.event, "handler": b.handler, "auth_type": b.user_id,
                         "offline": b.offline, "options": b.options} for b in app.bindings])


@bp.get("/portals/<name>/offline")
def offline_rows(name: str) -> Response:
    """The offline queue as stored, with each row's reservation and error mark."""
    the_portal = _portal(name)
    app = _app(the_portal)
    with the_portal.lock:
        return jsonify([{"id": row.id, "timestamp": dates.iso_utc(row.timestamp), "event_name": row.event_name,
                         "data": row.data, "additional": row.additional, "message_id": row.message_id,
                         "process_id": row.process_id, "error": row.error} for row in app.offline.values()])


@bp.post("/install-forged")
def install_forged() -> Response:
    """POST a made-up installation callback: `{url, portal?, event?, auth?, data?}`."""
    body = _body()
    url = body.get("url")
    if not url:
        raise ControlError("url is required")
    name = body.get("portal")
    the_portal = _portal(str(name)) if name else None
    auth, data = body.get("auth") or {}, body.get("data")
    if not isinstance(auth, dict) or not (data is None or isinstance(data, dict)):
        raise ControlError("auth and data must be objects")
    return jsonify(apps.forged_install(registry(), str(url), the_portal, str(body.get("event", "ONAPPINSTALL")),
                                       auth, data))


@bp.get("/oauth/calls")
def oauth_calls() -> Response:
    """The token endpoint's log, all of it or `?portal=`'s calls."""
    return jsonify(registry().oauth_calls(request.args.get("portal")))


@bp.route("/oauth/faults", methods=["GET", "POST", "DELETE"])
def oauth_faults() -> Response:
    """Inject a token-endpoint fault `{status, error, description, times, delay}`, list them, or clear them."""
    the_apps = registry()
    if request.method == "POST":
        try:
            fault = TokenFault(**_body())
        except TypeError as exc:
            raise ControlError(str(exc)) from exc
        the_apps.add_fault(fault)
    elif request.method == "DELETE":
        the_apps.clear_faults()
    return jsonify(the_apps.faults())
