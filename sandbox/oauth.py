"""The OAuth server's token endpoint, `/oauth/token/` (reference §9): refresh-token grants only.

Refresh tokens rotate: each one works once and the answer carries a new pair. The answer's `domain` is the
OAuth server's host, not the portal's; the portal is named by `client_endpoint` and `member_id`. Wrong
application credentials are 401 `invalid_client`; an unknown, used or revoked refresh token is 400
`invalid_grant`. Every call is logged (per portal, by whose refresh token it named), and failures can be
injected (`Apps.oauth_faults`): a status with a JSON error, a delay, or a dropped connection.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Blueprint, Response, request

from sandbox.apps import Apps, registry
from sandbox.appstate import APP_STATUS, SCOPE
from sandbox.rest import drop_connection, json_response

bp = Blueprint("sandbox_oauth", __name__)


def _params() -> dict[str, Any]:
    """Query string, form body or JSON body: the OAuth server is called every way in the wild."""
    params: dict[str, Any] = dict(request.values.items())
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    return params


def _error(status: int, code: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": code, "error_description": description}


def _same(given: Any, expected: str) -> bool:
    return hmac.compare_digest(str(given or "").encode(), expected.encode())


@bp.route("/oauth/token/", methods=["GET", "POST"])
def token() -> Response:
    """Exchange a refresh token for a new token pair."""
    apps = registry()
    params = _params()
    owner = apps.server.tokens.owner(str(params.get("refresh_token") or ""))
    grant_type = str(params.get("grant_type") or "")
    fault = apps.take_oauth_fault()
    if fault is not None and fault.delay > 0:
        time.sleep(fault.delay)
    if fault is not None and fault.status != 200:
        apps.log_oauth(owner, grant_type, fault.status, fault.error)
        if fault.status == 0:
            return drop_connection()
        return json_response(fault.status, {"error": fault.error, "error_description": fault.description})
    status, body = _refresh(apps, params)
    apps.log_oauth(owner, grant_type, status, body.get("error"))
    return json_response(status, body)


def _refresh(apps: Apps, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    config = apps.default.config
    if params.get("grant_type") != "refresh_token":
        return _error(400, "invalid_request", "grant_type must be refresh_token")
    if not (_same(params.get("client_id"), config.app_client_id)
            and _same(params.get("client_secret"), config.app_client_secret)):
        return _error(401, "invalid_client", "Invalid client credentials")
    grant = apps.server.tokens.redeem(str(params.get("refresh_token") or ""))
    portal = apps.get(grant.portal) if grant is not None else None
    if grant is None or portal is None or portal.app is None:
        return _error(400, "invalid_grant", "Invalid grant")
    app, portal_config = portal.app, portal.config
    issued = apps.server.tokens.issue(app.name, grant.user_id, portal_config.access_ttl, time.time())
    return 200, {"access_token": issued.access_token, "expires": issued.expires, "expires_in": issued.expires_in,
                 "scope": SCOPE, "domain": request.host.split(":")[0], "server_endpoint": app.server.server_endpoint,
                 "status": APP_STATUS, "client_endpoint": app.client_endpoint, "member_id": portal_config.member_id,
                 "user_id": issued.user_id, "refresh_token": issued.refresh_token}
