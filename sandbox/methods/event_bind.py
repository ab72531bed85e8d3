"""`event.bind`, `event.unbind`, `event.get` (reference §1.8), ported from `Rest\\Api\\Event`.

Application auth only: a webhook gets WRONG_AUTH_TYPE. Binding keys are case-insensitive. A binding is
(event, handler, user); binding it again is ERROR_CORE "Unable to set event handler: Handler already
binded". Unbinding what is not bound is not an error: the answer counts what was removed (`{"count": 0}`).
Source keys (`auth_connector`) are not simulated: every binding has the empty connector.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sandbox.appstate import AppState, Binding
from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import RestError, access_denied, argument_error, argument_null, wrong_auth_type
from sandbox.records import php_int

TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD", "ONTASKCOMMENTUPDATE",
               "ONTASKCOMMENTDELETE")
APP_EVENTS = ("ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT", "ONAPPTEST", "ONAPPMETHODCONFIRM",
              "ONOFFLINEEVENT")
KNOWN_EVENTS = frozenset(TASK_EVENTS + APP_EVENTS)
"""Events of the `task` scope and of the global one: what an application with scope `task` may bind."""
ONLINE_ONLY = frozenset({"ONOFFLINEEVENT"})
"""Declared `disableOffline`: a queue notification cannot itself be queued."""
OPTIONS = {"ONOFFLINEEVENT": ("minTimeout",)}
"""`allowOptions` per event; other options are dropped."""


def require_app(call: Call) -> AppState:
    """The calling application, or WRONG_AUTH_TYPE for a webhook."""
    if call.portal.app is None:
        raise wrong_auth_type()
    return call.portal.app


def upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    """`array_change_key_case($query, CASE_UPPER)`."""
    return {str(key).upper(): value for key, value in params.items()}


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _event_type(query: dict[str, Any]) -> str:
    kind = _text(query.get("EVENT_TYPE")).lower()
    if kind and kind not in ("online", "offline"):
        raise argument_error("Value must be one of {online|offline}")
    return kind or "online"


def check_handler(url: str) -> None:
    """`HandlerHelper::checkCallback`, reduced to what does not depend on the application's own URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RestError(400, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol")
    if not parts.hostname or "." not in parts.hostname:
        raise RestError(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL")


@register(CLASSIC, "event.bind")
def bind(call: Call) -> Outcome:
    """Bind an online handler, or subscribe the offline queue (`event_type=offline`, administrators only)."""
    app = require_app(call)
    config = call.portal.config
    query = upper_keys(call.params)
    name = _text(query.get("EVENT")).upper()
    user = php_int(query.get("AUTH_TYPE"))
    handler = _text(query.get("HANDLER"))
    raw_options = query.get("OPTIONS")
    if user > 0:
        if not config.is_admin and user != config.user_id:
            raise access_denied("Event binding with AUTH_TYPE requires administrator access rights")
    elif not config.is_admin:
        user = config.user_id
    if name == "":
        raise argument_null("EVENT")
    offline = _event_type(query) == "offline"
    if offline:
        if not config.is_admin:
            raise access_denied("Offline events binding requires administrator access rights")
        handler, user = "", 0
    elif handler == "":
        raise argument_null("HANDLER")
    if handler:
        check_handler(handler)
    if name not in KNOWN_EVENTS:
        raise RestError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    if offline and name in ONLINE_ONLY:
        raise argument_error("Offline event cannot be registered for this event.")
    options = raw_options if isinstance(raw_options, dict) else {}
    kept = {key: php_int(options[key]) for key in OPTIONS.get(name, ()) if key in options}
    if any(b.event == name and b.handler == handler and b.user_id == user for b in app.bindings):
        raise RestError(400, "ERROR_CORE", "Unable to set event handler: Handler already binded")
    app.bindings.append(Binding(app.new_id("binding"), name, handler, user, offline, kept))
    return Outcome(True)


@register(CLASSIC, "event.unbind")
def unbind(call: Call) -> Outcome:
    """Remove matching bindings; `{"count": N}`, 0 when nothing matched."""
    app = require_app(call)
    config = call.portal.config
    query = upper_keys(call.params)
    name = _text(query.get("EVENT")).upper()
    handler = _text(query.get("HANDLER"))
    if name == "":
        raise argument_null("EVENT")
    offline = _event_type(query) == "offline"
    user: int | None = None
    if offline:
        if not config.is_admin:
            raise access_denied("Offline events unbinding requires administrator access rights")
        handler = ""
    elif handler == "":
        raise argument_null("HANDLER")
    elif "AUTH_TYPE" in query:
        user = php_int(query["AUTH_TYPE"])
        if not config.is_admin and user != config.user_id:
            raise access_denied("Event unbinding with AUTH_TYPE requires administrator access rights")
    elif not config.is_admin:
        user = config.user_id
    gone = [b for b in app.bindings
            if b.event == name and b.handler == handler and (user is None or b.user_id == user)]
    app.bindings[:] = [b for b in app.bindings if b not in gone]
    return Outcome({"count": len(gone)})


@register(CLASSIC, "event.get")
def get(call: Call) -> Outcome:
    """The application's bindings in the order they were made (a non-administrator sees their own)."""
    app = require_app(call)
    config = call.portal.config
    rows: list[dict[str, Any]] = []
    for b in app.bindings:
        if not config.is_admin and b.user_id != config.user_id:
            continue
        if b.offline:
            rows.append({"event": b.event, "connector_id": "", "offline": 1})
        else:
            rows.append({"event": b.event, "handler": b.handler, "auth_type": str(b.user_id), "offline": 0})
    return Outcome(rows)
