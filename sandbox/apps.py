"""The application-mode portals of one sandbox and the application's lifecycle on them (SPEC §10,
reference §9 and §13).

Each portal is a full `Portal` (its own data, request budget, request log, faults and outbox) with an
`AppState`; REST calls reach it at `/portals/<name>/rest/` with OAuth tokens. Its identity is derived from
its name, so a test can predict it: `member_id` is 32 hex digits from the name, the domain is
`<name>.sandbox.bitrix24.test`, and the application token is per application and portal (stable across
reinstalls until set to something else), as `CRestUtil::getApplicationToken` derives it.

Locks: the registry's lock guards the list of portals, the OAuth log and its faults; a portal's own lock
its data and `AppState`. Nothing here holds the registry's lock while taking a portal's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app

from sandbox import app_events, seed, ufdefs
from sandbox.appstate import AppServer, AppState
from sandbox.config import with_overrides
from sandbox.events import post_form
from sandbox.phpform import build_query
from sandbox.store import Portal

NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
DOMAIN_SUFFIX = "sandbox.bitrix24.test"
UNINSTALL_EVENTS = ("ONAPPUNINSTALL", "ONAPPSUNINSTALL")
"""The event's name, and the spelling of the docs' example (which one the server sends is unconfirmed)."""


@dataclass
class TokenFault:
    """An injected failure of the OAuth token endpoint: the next `times` calls (<= 0: until cleared)."""

    status: int = 503
    error: str = "temporarily_unavailable"
    description: str = "Service temporarily unavailable"
    times: int = 1
    delay: float = 0.0


def member_id_of(name: str) -> str:
    """The portal's stable id: 32 hex digits, the same for the same name in every run."""
    return hashlib.md5(f"sandbox portal {name}".encode()).hexdigest()  # noqa: S324 - an id, not a secret


def application_token_of(member_id: str, client_id: str, client_secret: str) -> str:
    """Per application and portal, derived the way the server does when none is stored."""
    return hashlib.md5(f"{member_id}|{client_id}|{client_secret}".encode()).hexdigest()  # noqa: S324


def registry() -> Apps:
    """The registry of the running sandbox app."""
    apps: Apps = current_app.extensions["sandbox_apps"]
    return apps


class Apps:
    """Every application-mode portal, the token store they share, and the OAuth server's log and faults."""

    def __init__(self, default: Portal) -> None:
        self.default = default
        self.server = AppServer()
        self.lock = threading.Lock()
        self.portals: dict[str, Portal] = {}
        self.oauth_log: list[dict[str, Any]] = []
        self.oauth_faults: list[TokenFault] = []

    def add(self, name: str, overrides: dict[str, Any] | None = None, seed_value: Any = None) -> Portal:
        """Create the portal `name` (settings from the webhook portal's, plus `overrides`) and seed it.

        Raises:
            ValueError: a bad or taken name, an unknown setting or seed.
        """
        if not NAME.match(name):
            raise ValueError(f"portal name must be a DNS label of a-z, 0-9 and '-', not {name!r}")
        base = self.default.config
        member_id = member_id_of(name)
        identity = {"member_id": member_id, "domain": f"{name}.{DOMAIN_SUFFIX}", "handler_url": None,
                    "secret": secrets.token_hex(12), "portals": "",
                    "application_token": application_token_of(member_id, base.app_client_id, base.app_client_secret)}
        config = with_overrides(base, {**identity, **(overrides or {})})
        portal = Portal(startup=config, config=config)
        portal.app = AppState(name=name, server=self.server)
        ufdefs.install_system_fields(portal)
        seed.apply(portal, seed_value)
        with self.lock:
            if name in self.portals:
                raise ValueError(f"portal {name!r} already exists")
            self.portals[name] = portal
        return portal

    def get(self, name: str) -> Portal | None:
        """The portal `name`, if it exists."""
        with self.lock:
            return self.portals.get(name)

    def all(self) -> list[Portal]:
        """Every application-mode portal, in creation order."""
        with self.lock:
            return list(self.portals.values())

    def remove(self, name: str) -> bool:
        """Delete a portal with its tokens; False when there was none."""
        with self.lock:
            portal = self.portals.pop(name, None)
        if portal is None:
            return False
        self.server.tokens.forget(name)
        portal.outbox.close()
        return True

    def reset(self) -> None:
        """Remove every portal, token, OAuth record and fault; then create the startup portals afresh
        (the webhook portal's `portals` setting)."""
        with self.lock:
            old = list(self.portals.values())
            self.portals.clear()
            self.oauth_log.clear()
            self.oauth_faults.clear()
        self.server.tokens.forget()
        for portal in old:
            portal.outbox.clear()
            portal.outbox.close()
        for name in startup_names(self.default.config.portals):
            self.add(name)

    def close(self) -> None:
        """Stop every portal's event delivery (server shutdown)."""
        for portal in self.all():
            portal.outbox.close()

    def take_oauth_fault(self) -> TokenFault | None:
        """Consume one use of the first injected token-endpoint fault, if any."""
        with self.lock:
            if not self.oauth_faults:
                return None
            fault = self.oauth_faults[0]
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self.oauth_faults.pop(0)
            return fault

    def log_oauth(self, portal: str | None, grant_type: str, status: int, error: str | None) -> None:
        """Record one token-endpoint call; `portal` is whose refresh token it named (None: unknown)."""
        with self.lock:
            self.oauth_log.append({"seq": len(self.oauth_log) + 1, "at": time.time(), "portal": portal,
                                   "grant_type": grant_type, "status": status, "error": error})

    def oauth_calls(self, name: str | None = None) -> list[dict[str, Any]]:
        """The token-endpoint log, all of it or the calls that named a refresh token of `name`."""
        with self.lock:
            return [dict(item) for item in self.oauth_log if name is None or item["portal"] == name]

    def faults(self) -> list[dict[str, Any]]:
        """The injected token-endpoint faults."""
        with self.lock:
            return [asdict(fault) for fault in self.oauth_faults]

    def add_fault(self, fault: TokenFault) -> None:
        """Inject a token-endpoint fault after those already there."""
        with self.lock:
            self.oauth_faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every token-endpoint fault."""
        with self.lock:
            self.oauth_faults.clear()


def startup_names(text: str) -> list[str]:
    """`"alpha, beta"` → `["alpha", "beta"]`."""
    return [name.strip() for name in text.split(",") if name.strip()]


def summary(portal: Portal) -> dict[str, Any]:
    """What a test needs to know about a portal: identity, endpoints, install state, queue sizes."""
    app = _app(portal)
    with portal.lock:
        config = portal.config
        out = {"name": app.name, "member_id": config.member_id, "domain": config.domain,
               "client_endpoint": app.client_endpoint, "server_endpoint": app.server.server_endpoint,
               "application_token": config.application_token, "installed": app.installed,
               "bindings": len(app.bindings), "offline_rows": len(app.offline),
               "access_ttl": config.access_ttl, "offline_extended": config.offline_extended}
    out.update(app.server.tokens.counts(app.name, time.time()))
    return out


def _app(portal: Portal) -> AppState:
    if portal.app is None:
        raise ValueError("not an application-mode portal")
    return portal.app


def issue_tokens(portal: Portal) -> dict[str, Any]:
    """Install the application without a callback and hand out a token pair (tests that call REST directly)."""
    app = _app(portal)
    with portal.lock:
        app.installed = True
        grant = app_events.issue(portal, app, portal.config.user_id, with_refresh=True)
        return app_events.auth_block(portal, app, grant)


def install(portal: Portal, url: str) -> dict[str, Any]:
    """Install the application: fresh tokens, then the installation callback POSTed to `url` (outside the
    portal's lock, so the receiver may call the portal back). Bindings of an earlier install stay."""
    app = _app(portal)
    with portal.lock:
        app.installed = True
        grant = app_events.issue(portal, app, portal.config.user_id, with_refresh=True)
        body = app_events.install_body(portal, app, grant)
    return portal.outbox.deliver_now("ONAPPINSTALL", url, body)


def uninstall(portal: Portal, clean: bool, event: str = "ONAPPUNINSTALL") -> list[dict[str, Any]]:
    """Remove the application: its tokens stop working, its bindings and offline queue go, and each bound
    ONAPPUNINSTALL handler is told (with `event` as the event's name), the API access already revoked.

    Raises:
        ValueError: `event` is neither spelling of the uninstall event.
    """
    if event not in UNINSTALL_EVENTS:
        raise ValueError(f"event must be one of {', '.join(UNINSTALL_EVENTS)}")
    app = _app(portal)
    with portal.lock:
        handlers = [binding for binding in app.bindings if binding.event == "ONAPPUNINSTALL" and not binding.offline]
        bodies = [(binding.handler, app_events.uninstall_body(portal, app, event, binding.id, clean))
                  for binding in handlers]
        app.installed = False
        app.bindings.clear()
        app.offline.clear()
        app.signals.clear()
    app.server.tokens.revoke(app.name)
    return [portal.outbox.deliver_now(event, url, body) for url, body in bodies]


def forged_install(apps: Apps, url: str, portal: Portal | None, event: str, auth: dict[str, Any],
                   data: dict[str, Any] | None) -> dict[str, Any]:
    """POST an installation callback nobody issued: made-up tokens (unknown to the OAuth server) on the
    identity of `portal` (or a made-up one), with `auth` and `data` values replacing the defaults."""
    fake = {"access_token": secrets.token_hex(35), "expires": str(int(time.time()) + 3600), "expires_in": "3600",
            "scope": "task", "domain": "forged.bitrix24.test", "server_endpoint": apps.server.server_endpoint,
            "status": "L", "client_endpoint": "https://forged.bitrix24.test/rest/",
            "member_id": secrets.token_hex(16), "user_id": "1", "refresh_token": secrets.token_hex(16),
            "application_token": secrets.token_hex(16)}
    if portal is not None:
        app = _app(portal)
        with portal.lock:
            fake.update(domain=portal.config.domain, client_endpoint=app.client_endpoint,
                        member_id=portal.config.member_id, application_token=portal.config.application_token)
    defaults = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": app_events.LANGUAGE_ID}
    body = {"event": event, "data": {**defaults, **(data or {})}, "ts": str(int(time.time())),
            "auth": {**fake, **{key: str(value) for key, value in auth.items()}}}
    return {"payload": body, **post_form(url, build_query(body))}


def new_application_token() -> str:
    """A fresh random `application_token` (as if the application were registered anew)."""
    return secrets.token_hex(16)
