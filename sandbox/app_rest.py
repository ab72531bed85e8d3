"""REST endpoints of the application-mode portals: `/portals/<name>/rest/<method>` (classic) and
`/portals/<name>/rest/api/<method>` (REST 3.0), authorised by an OAuth access token (reference §2.1, §2.4).

The token is read as the REST core reads it (`OAuth\\Auth::getAuthKey`): an `Authorization: Bearer`
header, else `auth` or `access_token` among the request's params (query string, form or JSON body; body
keys win). Then the request runs exactly like a webhook request (`rest.serve`), against this portal.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, request

from sandbox import decode, rest
from sandbox.apps import registry
from sandbox.errors import RestError
from sandbox.phpform import parse_str
from sandbox.store import Portal

bp = Blueprint("sandbox_app_rest", __name__)
TOKEN_KEYS = ("auth", "access_token")


def no_auth() -> RestError:
    """No token at all."""
    return RestError(401, "NO_AUTH_FOUND", "Wrong authorization data")


def invalid_token() -> RestError:
    """A token this portal never issued (another portal's, a revoked or made-up one)."""
    return RestError(401, "invalid_token", "The access token provided is invalid.")


def expired_token() -> RestError:
    """A token past its `expires`: refresh it and call again."""
    return RestError(401, "expired_token", "The access token provided has expired.")


@bp.route("/portals/<name>/rest/<path:path>", methods=["GET", "POST"])
def app_rest(name: str, path: str) -> Response:
    """Entry point of every REST call on an application-mode portal."""
    the_portal = registry().get(name)
    if the_portal is None:
        return rest.json_response(404, {"error": "PORTAL_NOT_FOUND", "error_description": "Portal not found"})
    parts = path.split("/")
    api = "v3" if parts[0] == "api" and len(parts) > 1 else "classic"
    parts = parts[1:] if api == "v3" else parts
    method = parts[0].lower().removesuffix(".json") if len(parts) == 1 else ""
    return rest.serve(the_portal, api, method, lambda: authorize(the_portal, api), oauth=True)


def authorize(the_portal: Portal, api: str) -> RestError | None:
    """Check the request's access token against this portal; a good call counts as one hit."""
    app = the_portal.app
    token = access_token(api)
    if app is None or token is None:
        return no_auth()
    problem = app.server.tokens.check(token, app.name, time.time())
    if problem == "expired_token":
        return expired_token()
    if problem is not None:
        return invalid_token()
    app.hit += 1
    return None


def access_token(api: str) -> str | None:
    """The token a request carries, or None."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    params = decode.classic_params(request) if api == "classic" else _v3_params()
    for key in TOKEN_KEYS:
        value = params.get(key)
        if value is not None and not isinstance(value, dict | list):
            return str(value)
    return None


def _v3_params() -> dict[str, Any]:
    """The query string overlaid with a JSON object body, if the body is one (REST 3.0 bodies are JSON)."""
    params = parse_str(request.query_string.decode("utf-8", "replace"))
    try:
        body = json.loads(request.get_data(cache=True) or b"{}")
    except ValueError:
        return params
    if isinstance(body, dict):
        params.update(body)
    return params
