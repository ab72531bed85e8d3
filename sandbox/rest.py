"""The portal's REST endpoints: `/rest/<user>/<secret>/<method>` and `/rest/api/...` (reference §2).

Order of checks for every request: credentials, v3 switch, body decoding, request budget,
injected fault, then the method (a v3 write first looks for an idempotent replay).
Every request is logged once. Application-mode portals (`app_rest`) go through the same `serve`, with
an OAuth token check in place of the webhook credentials.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from sandbox import decode, execute
from sandbox.calls import V3
from sandbox.errors import RestError, V3Error, invalid_credentials, method_not_found, query_limit
from sandbox.idempotency import check_key, remember, replay
from sandbox.store import Fault, Portal

bp = Blueprint("sandbox_rest", __name__)


@dataclass
class _Request:
    """One REST request on its way through the checks."""

    api: str
    method: str
    params: dict[str, Any]
    start: int | None
    entry: dict[str, Any]
    oauth: bool = False


Authorize = Callable[[], RestError | None]
"""The credentials check of a request: None when it may go on, else the error to answer."""


def portal() -> Portal:
    """The portal a request acts on: the webhook portal, or the application-mode portal that a control
    request names with `?portal=` (`control_apps.select_portal` puts it in `g`)."""
    chosen: Portal | None = g.get("sandbox_portal")
    if chosen is not None:
        return chosen
    the_portal: Portal = current_app.extensions["sandbox_portal"]
    return the_portal


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer as the portal writes it: UTF-8 text, not `\\u` escapes."""
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json",
                    headers=headers)


@bp.route("/rest/<path:path>", methods=["GET", "POST"])
def rest(path: str) -> Response:
    """Entry point of every REST call."""
    parts = path.split("/")
    api = "v3" if parts[0] == "api" else "classic"
    parts = parts[1:] if api == "v3" else parts
    method = parts[2].lower().removesuffix(".json") if len(parts) == 3 else ""
    the_portal = portal()

    def webhook() -> RestError | None:
        config = the_portal.config
        return None if _authorized(parts, str(config.user_id), config.secret) else invalid_credentials()

    return serve(the_portal, api, method, webhook)


def serve(the_portal: Portal, api: str, method: str, authorize: Authorize, oauth: bool = False) -> Response:
    """Run one REST request against `the_portal`: the checks, the method, the log entry.

    `oauth` marks an application's call: its REST 3.0 body carries `auth`, which is not a parameter.
    """
    entry: dict[str, Any] = {"api": api, "method": method, "status": 200, "error": None, "params": {},
                             "content_type": request.headers.get("Content-Type", ""),
                             "idempotency_key": request.headers.get("Idempotency-Key"),
                             "replayed": False, "commands": []}
    req = _Request(api, method, {}, None, entry, oauth)
    with the_portal.lock:
        response, fault = _checks(the_portal, req, authorize)
        if fault is None:
            the_portal.log_request(entry)
    if fault is None:
        return response
    return _faulted(the_portal, fault, req)


def _checks(the_portal: Portal, req: _Request, authorize: Authorize) -> tuple[Response, Fault | None]:
    config = the_portal.config
    refused = authorize()
    if refused is not None:
        return _error(req, refused), None
    if req.api == "v3" and not config.v3_enabled:
        req.api = "classic"  # a portal without REST 3.0 answers like any unknown classic method
        return _error(req, method_not_found()), None
    try:
        req.params, req.start = _params(req.api, req.method, req.oauth)
    except decode.InvalidJson as exc:
        return _error(req, V3Error(400, "INVALIDJSONEXCEPTION", f"Invalid JSON: {exc}")), None
    req.entry["params"] = execute.log_params(req.api, req.method, req.params)
    if not the_portal.bucket.admit(time.monotonic()):
        return _error(req, query_limit()), None
    fault = the_portal.take_fault(req.method, in_batch=False)
    if fault is not None:
        return Response(status=500), fault
    return _execute(the_portal, req), None


def _authorized(parts: list[str], user_id: str, secret: str) -> bool:
    if len(parts) != 3:
        return False
    return hmac.compare_digest(parts[0].encode(), user_id.encode()) and hmac.compare_digest(
        parts[1].encode(), secret.encode())


def _params(api: str, method: str, oauth: bool) -> tuple[dict[str, Any], int | None]:
    if api == "v3":
        params = decode.v3_params(request, method)
        if oauth:
            params = {key: value for key, value in params.items() if key not in decode.CONTROL_PARAMS}
        return params, None
    return decode.split_control(decode.classic_params(request))


def _error(req: _Request, error: RestError) -> Response:
    """Answer `error` in the envelope of the API that was called."""
    req.entry.update(status=error.status, error=error.code)
    body = error.body()
    if req.api == "v3" and not isinstance(error, V3Error):
        body = {"error": {"code": error.code, "message": error.description}}
    return json_response(error.status, body)


def _execute(the_portal: Portal, req: _Request) -> Response:
    key = req.entry["idempotency_key"]
    method = V3.get(req.method) if req.api == "v3" else None
    idempotent = method is not None and method.write and key is not None
    if idempotent:
        try:
            check_key(key)
            stored = replay(the_portal, req.method, key, req.params)
        except V3Error as exc:
            return _error(req, exc)
        if stored is not None:
            req.entry.update(status=stored.status, replayed=True)
            return json_response(stored.status, stored.body, {"Idempotent-Replayed": "true"})
    answer = execute.run(the_portal, req.api, req.method, req.params, req.start)
    if idempotent and answer.error is None:
        remember(the_portal, req.method, key, req.params, answer.status, answer.body)
    req.entry.update(status=answer.status, error=answer.error, commands=answer.commands)
    return json_response(answer.status, answer.body)


def _faulted(the_portal: Portal, fault: Fault, req: _Request) -> Response:
    """Answer an injected fault after its delay, outside the lock; status 200 = slow but normal."""
    if fault.delay > 0:
        time.sleep(fault.delay)
    with the_portal.lock:
        if fault.status == 200:
            response = _execute(the_portal, req)
        elif fault.after:  # done, but the answer never arrives
            _execute(the_portal, req)
            req.entry.update(status=fault.status, error=fault.error)
            response = _fault_body(fault)
        else:
            req.entry.update(status=fault.status, error=fault.error)
            response = _fault_body(fault)
        the_portal.log_request(req.entry)
    if fault.status == 0:
        return drop_connection()
    return response


def _fault_body(fault: Fault) -> Response:
    if fault.envelope == "v3":
        return json_response(fault.status, {"error": {"code": fault.error, "message": fault.description}})
    if fault.envelope == "html":
        html = f"<html><body><h1>{fault.status}</h1><p>{fault.description}</p></body></html>"
        return Response(html, status=fault.status, mimetype="text/html")
    if fault.envelope == "empty":
        return Response(b"", status=fault.status or 500)
    return json_response(fault.status or 500, {"error": fault.error, "error_description": fault.description})


def drop_connection() -> Response:
    """Close the socket without an answer: the client sees the connection closed.

    Outside werkzeug's own server (no `werkzeug.socket`), a truncated JSON body is sent instead.
    """
    sock = request.environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return Response(b"", status=500)
    return Response(b'{"result": ', status=200, mimetype="application/json")
