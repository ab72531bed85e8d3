"""Where a task change goes, and the bodies an installed application receives (reference §1.2-1.5, §1.8,
§1.9, §13).

On the webhook portal a change is the outgoing-webhook event (no tokens in `auth`). On an application-mode
portal it goes to what the app bound with `event.bind`: each online handler gets the event with a fresh
access token of the acting user in `auth`, an offline binding puts it in the offline queue, and a queue
that grew notifies the ONOFFLINEEVENT handlers (with a refresh token), throttled by `minTimeout`. Nothing
reaches an application that is not installed. Callers hold the portal's lock.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox import dates, offline
from sandbox.appstate import APP_STATUS, SCOPE, AppState, Binding, Grant
from sandbox.events import event_data
from sandbox.store import Portal

ONOFFLINEEVENT = "ONOFFLINEEVENT"
DEFAULT_MIN_TIMEOUT = 1
"""Seconds between two ONOFFLINEEVENT notifications when the binding sets no `minTimeout`."""
LANGUAGE_ID = "en"


def task_changed(portal: Portal, event: str, task_id: int) -> None:
    """Announce a task add or update (ONTASKADD / ONTASKUPDATE) the way this portal does."""
    if portal.app is None:
        portal.outbox.emit(event, task_id, portal.config, portal.client_endpoint)
        return
    raise_event(portal, portal.app, event, event_data(event, task_id), task_id)


def raise_event(portal: Portal, app: AppState, event: str, data: Any, task_id: int | None) -> None:
    """Deliver `event` to every online binding and queue it for the offline one."""
    if not app.installed:
        return
    queued = False
    for binding in list(app.bindings):
        if binding.event != event:
            continue
        if binding.offline:
            offline.enqueue(app, event, data, portal.config.user_id, dates.now())
            queued = True
            continue
        grant = issue(portal, app, binding.user_id or portal.config.user_id, with_refresh=False)
        body = envelope(event, binding.id, data, auth_block(portal, app, grant))
        portal.outbox.post(event, task_id, binding.handler, body, _outcome(portal))
    if queued:
        signal_offline(portal, app)


def signal_offline(portal: Portal, app: AppState) -> None:
    """Tell the ONOFFLINEEVENT handlers the queue has new rows, unless one was told too recently.

    `minTimeout` > 0: at most one notification per that many seconds (`checkSendTime` keeps a cache entry
    that long; what arrives meanwhile sends nothing). 0: at most one per hit.
    """
    now = time.time()
    for binding in list(app.bindings):
        if binding.event != ONOFFLINEEVENT or binding.offline:
            continue
        if not _due(app, binding, now):
            portal.outbox.post(ONOFFLINEEVENT, None, binding.handler, {"event": ONOFFLINEEVENT}, "throttled")
            continue
        app.signals[binding.id] = (now, app.hit)
        grant = issue(portal, app, binding.user_id or portal.config.user_id, with_refresh=True)
        body = envelope(ONOFFLINEEVENT, binding.id, None, auth_block(portal, app, grant))
        portal.outbox.post(ONOFFLINEEVENT, None, binding.handler, body, _outcome(portal))


def _due(app: AppState, binding: Binding, now: float) -> bool:
    last = app.signals.get(binding.id)
    if last is None:
        return True
    timeout = int(binding.options.get("minTimeout", DEFAULT_MIN_TIMEOUT))
    if timeout <= 0:
        return last[1] != app.hit
    return now - last[0] >= timeout


def _outcome(portal: Portal) -> str:
    return "dropped" if portal.config.events_paused else "pending"


def issue(portal: Portal, app: AppState, user_id: int, with_refresh: bool) -> Grant:
    """Fresh tokens of `user_id` on this portal, living `access_ttl` seconds."""
    return app.server.tokens.issue(app.name, user_id, portal.config.access_ttl, time.time(), with_refresh)


def envelope(event: str, handler_id: int | None, data: Any, auth: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys of an event body (§1.2); an empty `data` is left out, as `http_build_query` does."""
    body: dict[str, Any] = {"event": event}
    if handler_id is not None:
        body["event_handler_id"] = str(handler_id)
    if data:
        body["data"] = data
    body["ts"] = str(int(time.time()))
    body["auth"] = auth
    return body


def auth_block(portal: Portal, app: AppState, grant: Grant) -> dict[str, Any]:
    """`auth` with tokens (§1.4): an application's events, ONOFFLINEEVENT and the installation callback."""
    config = portal.config
    auth: dict[str, Any] = {
        "access_token": grant.access_token, "expires": str(grant.expires), "expires_in": str(grant.expires_in),
        "scope": SCOPE, "domain": config.domain, "server_endpoint": app.server.server_endpoint,
        "status": APP_STATUS, "client_endpoint": app.client_endpoint, "member_id": config.member_id,
        "user_id": str(grant.user_id),
    }
    if grant.refresh_token is not None:
        auth["refresh_token"] = grant.refresh_token
    auth["application_token"] = config.application_token
    return auth


def tokenless_auth(portal: Portal, app: AppState) -> dict[str, Any]:
    """`auth` without tokens: what ONAPPUNINSTALL carries (§13)."""
    config = portal.config
    return {"domain": config.domain, "server_endpoint": app.server.server_endpoint,
            "client_endpoint": app.client_endpoint, "member_id": config.member_id,
            "application_token": config.application_token}


def install_body(portal: Portal, app: AppState, grant: Grant) -> dict[str, Any]:
    """The installation callback of an "API only" local application (§13)."""
    data = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": LANGUAGE_ID}
    return envelope("ONAPPINSTALL", None, data, auth_block(portal, app, grant))


def uninstall_body(portal: Portal, app: AppState, event: str, handler_id: int, clean: bool) -> dict[str, Any]:
    """ONAPPUNINSTALL for a bound handler: `data[CLEAN]` says whether the administrator asked to clear data."""
    data = {"LANGUAGE_ID": LANGUAGE_ID, "CLEAN": "1" if clean else "0"}
    return envelope(event, handler_id, data, tokenless_auth(portal, app))
