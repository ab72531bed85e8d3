"""The one admin-token check, shared by the admin API (``/audit``, ``/report``) and the RQ dashboard (``/rq``).

Without a configured ``TASKWARDEN_ADMIN_TOKEN`` these endpoints answer 404, as if they did not exist.
The token comes as a bearer token (the scheme is case-insensitive, RFC 7235), or as the password of
HTTP basic auth so that a browser can open the dashboard.
"""

from __future__ import annotations

import hmac

from flask import Request, abort, current_app


def admin_allowed(request: Request) -> bool:
    """Whether ``request`` carries the admin token; aborts with 404 when no token is configured."""
    token = current_app.extensions["taskwarden"].settings.taskwarden_admin_token
    if token is None or not token.get_secret_value():
        abort(404)
    sent = _sent_token(request)
    return bool(sent) and hmac.compare_digest(sent.encode(), token.get_secret_value().encode())


def _sent_token(request: Request) -> str:
    if request.authorization is not None and request.authorization.type == "basic":
        return request.authorization.password or ""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
