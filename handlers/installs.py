"""Application mode at the door: the installation callback, and which installed portal an event is from.

``POST /bitrix24/install`` trusts nothing in its body. It trades the posted refresh token at the OAuth
server (``B24_OAUTH_URL``, with the application's client id and secret): only a real installation of this
application gets an answer, and that answer, not the body, names the portal's endpoint and member_id. The
endpoint's host must be allowed (``B24_ALLOWED_PORTALS``), the events are bound (only those missing), and
only then is the portal stored. The posted ``client_endpoint`` is never called.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from redis import Redis

import keys
import metrics
from bitrix.client import Client
from bitrix.errors import BitrixError
from config.rules import RuleSet
from handlers.parse import parse_form, parse_json
from handlers.refusals import IntakeError, MalformedEvent, Unauthorized
from handlers.verify import verify_token
from portals import registry
from portals.oauth import Grant, OAuthRefused, OAuthUnreachable, exchange
from runtime import Runtime, app_portal, rules_for

log = structlog.get_logger(__name__)

EVENTS_PATH = "/bitrix24/events"
UNINSTALL_EVENTS = frozenset({"ONAPPUNINSTALL", "ONAPPSUNINSTALL"})
"""The docs' example spells it ONAPPSUNINSTALL; the event list ONAPPUNINSTALL: both are taken."""
VIEW_SECONDS = 5.0
"""How long a web process keeps a portal's record before reading it again (an uninstall shows within it)."""
Answer = tuple[int, dict[str, Any]]


class InstallRefused(IntakeError):
    status_code = 403
    code = "install_refused"


class PortalUnreachable(IntakeError):
    status_code = 502
    code = "unreachable"


@dataclass(frozen=True)
class PortalView:
    """What intake needs to know of an installed portal for each of its events."""

    member_id: str
    status: str
    application_token: str
    rules: RuleSet


_views: dict[str, tuple[float, PortalView | None]] = {}


def portal_view(rt: Runtime, member_id: str) -> PortalView | None:
    """The installed portal with this member_id (read from Redis at most every ``VIEW_SECONDS``)."""
    cached = _views.get(member_id)
    if cached is not None and time.monotonic() - cached[0] < VIEW_SECONDS:
        return cached[1]
    record = registry.load(rt.redis, rt.box, member_id)
    view = None if record is None else PortalView(member_id, record.status, record.application_token,
                                                  rules_for(rt.settings, rt.rules, member_id))
    _views[member_id] = (time.monotonic(), view)
    return view


def verify_app_event(rt: Runtime, member_id: str | None, token: str | None) -> PortalView:
    """The portal an event comes from, its token checked in constant time against the stored one.

    Raises:
        Unauthorized: no member_id, a portal not installed here, or a wrong token.
    """
    view = portal_view(rt, member_id) if member_id else None
    if view is None:
        raise Unauthorized("no portal with this member_id is installed")
    verify_token(token, view.application_token)
    return view


def uninstall(rt: Runtime, member_id: str, clean: bool) -> None:
    """``ONAPPUNINSTALL``, verified: the portal is removed and its tokens deleted, so its jobs and sweeps stop;
    with ``CLEAN=1`` its audit, report and cursors go too (the record stays, marked removed)."""
    registry.set_status(rt.redis, member_id, registry.REMOVED)
    registry.forget_tokens(rt.redis, member_id)
    _views.pop(member_id, None)
    if clean:
        record_key = keys.portal_record(member_id)
        doomed = [key for key in rt.redis.scan_iter(match=f"{keys.PREFIX}:{member_id}:*", count=500)
                  if key.decode() != record_key]
        for start in range(0, len(doomed), 500):
            rt.redis.delete(*doomed[start:start + 500])
    log.info("portal.uninstalled", member_id=member_id, clean=clean)


def answer_install(rt: Runtime, content_type: str, body: bytes) -> Answer:
    """The installation callback's answer: 200 once stored and bound, else why not (nothing stored)."""
    try:
        record = install(rt, _auth_of(content_type, body))
    except IntakeError as error:
        log.warning("install.refused", status=error.status_code, reason=error.message)
        metrics.count("app", "installs", outcome=error.code)
        return error.status_code, error.to_dict()
    metrics.count(record.member_id, "installs", outcome="installed")
    return 200, {"status": "installed", "member_id": record.member_id, "domain": record.domain}


def install(rt: Runtime, auth: dict[str, str]) -> registry.PortalRecord:
    """Confirm, check, bind, store. Raises ``IntakeError`` subclasses (400, 403, 502); stores nothing then."""
    grant = _confirm(rt, auth.get("refresh_token", ""))
    if grant.member_id != auth.get("member_id"):
        raise InstallRefused("the OAuth server's member_id differs from the posted one")
    _check_endpoint(rt, grant.client_endpoint)
    previous = registry.load(rt.redis, rt.box, grant.member_id)
    now = time.time()
    record = registry.PortalRecord(
        member_id=grant.member_id, client_endpoint=grant.client_endpoint,
        domain=urlsplit(grant.client_endpoint).hostname or "", status=registry.ACTIVE,
        access_token=grant.access_token, refresh_token=grant.refresh_token,
        application_token=auth.get("application_token") or (previous.application_token if previous else ""),
        expires_at=grant.expires_at, scope=grant.scope,
        installed_at=previous.installed_at if previous and previous.status != registry.REMOVED else now,
        updated_at=now)
    if not record.application_token:
        raise MalformedEvent("no auth[application_token]")
    bind_events(rt, record)
    registry.save(rt.redis, rt.box, record)
    _views.pop(record.member_id, None)
    log.info("portal.installed", member_id=record.member_id, domain=record.domain, again=previous is not None)
    return record


def bind_events(rt: Runtime, record: registry.PortalRecord) -> list[str]:
    """Bind the handlers the delivery mode needs that ``event.get`` does not list yet; returns what was bound."""
    client = Client(app_portal(rt.settings, record), rt.redis, tokens=_Fixed(record.access_token))
    try:
        bound = _bindings(client.call("event.get").result)
        wanted = [item for item in wanted_bindings(rt) if item not in bound]
        for event, handler, offline in wanted:
            params: dict[str, Any] = {"event": event, "event_type": "offline" if offline else "online"}
            if handler:
                params["handler"] = handler
            client.call("event.bind", params)
    except BitrixError as error:
        raise PortalUnreachable(f"binding the events failed: {error.code}") from None
    finally:
        client.close()
    return [event for event, _handler, _offline in wanted]


def wanted_bindings(rt: Runtime) -> list[tuple[str, str, bool]]:
    """(event, handler URL or "", offline) for the configured delivery (SPEC section 10)."""
    delivery, public = rt.settings.taskwarden_event_delivery, rt.settings.taskwarden_public_url
    handler = f"{public.rstrip('/')}{EVENTS_PATH}" if public else ""
    wanted: list[tuple[str, str, bool]] = []
    if handler:
        wanted.append(("ONAPPUNINSTALL", handler, False))
    if delivery in ("push", "both") and handler:
        wanted += [("ONTASKADD", handler, False), ("ONTASKUPDATE", handler, False)]
    if delivery in ("offline", "both"):
        wanted += [("ONTASKADD", "", True), ("ONTASKUPDATE", "", True)]
        if handler:
            wanted.append(("ONOFFLINEEVENT", handler, False))
    return wanted


def _bindings(result: Any) -> set[tuple[str, str, bool]]:
    rows = result if isinstance(result, list) else []
    return {(str(row.get("event", "")).upper(), str(row.get("handler") or ""),
             str(row.get("offline", "0")) in ("1", "true", "True", "Y"))
            for row in rows if isinstance(row, dict)}


def _confirm(rt: Runtime, refresh_token: str) -> Grant:
    if not refresh_token:
        raise MalformedEvent("no auth[refresh_token]: not an installation callback")
    try:
        return exchange(rt.settings, refresh_token)
    except OAuthRefused as refused:
        raise InstallRefused(f"the OAuth server refused the posted refresh token ({refused.code})") from None
    except OAuthUnreachable as exc:
        raise PortalUnreachable(f"the OAuth server could not be reached ({exc})") from None


def _check_endpoint(rt: Runtime, endpoint: str) -> None:
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    patterns = [p.strip().lower() for p in rt.settings.b24_allowed_portals.split(",") if p.strip()]
    if not any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns):
        raise InstallRefused(f"the portal's host {host!r} is not in B24_ALLOWED_PORTALS")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InstallRefused("the portal's endpoint is not https")


def _auth_of(content_type: str, body: bytes) -> dict[str, str]:
    payload = parse_form(body) if content_type != "application/json" else parse_json(body)
    if str(payload.get("event", "")).upper() != "ONAPPINSTALL":
        raise MalformedEvent("not an installation callback (event must be ONAPPINSTALL)")
    auth = payload.get("auth")
    if not isinstance(auth, dict):
        raise MalformedEvent("no auth block")
    return {str(k): str(v) for k, v in auth.items() if isinstance(v, str | int)}


class _Fixed:
    """The fresh access token of an installation, used while binding its events (nothing to refresh yet)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def refresh(self, stale: str) -> str:
        return self._token


TOUCH_SECONDS = 10.0
"""A web process notes a portal's latest event at most this often: ``portals`` shows it to the minute, and a
Redis write per event would double intake's round trips."""
_touched: dict[str, float] = {}


def touch(redis: Redis, member_id: str) -> None:
    """Note when the portal's last event arrived (``portals`` shows it)."""
    now = time.time()
    if now - _touched.get(member_id, 0.0) >= TOUCH_SECONDS:
        _touched[member_id] = now
        redis.set(keys.last_event(member_id), int(now))
