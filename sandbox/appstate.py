"""What an application-mode portal keeps besides its data: the app's bindings, its offline queue, and the
OAuth tokens the sandbox's authorization server issued (reference §1.8, §1.9, §9).

Plain state. A portal's `AppState` is guarded by that portal's lock; the token store is shared by every
portal (one OAuth server) and has a lock of its own, always taken last: code holding it never takes a
portal's lock.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SCOPE = "task"
APP_STATUS = "L"
"""A local application (`auth[status]`)."""


@dataclass
class AccessGrant:
    """An access token: whose it is and until when it works."""

    portal: str
    user_id: int
    expires: float


@dataclass
class RefreshGrant:
    """A refresh token; it works once (`active` → `used`), or never again once `revoked`."""

    portal: str
    user_id: int
    state: str = "active"


@dataclass(frozen=True)
class Grant:
    """A freshly issued token pair, as the OAuth answer and the `auth` blocks carry it."""

    access_token: str
    refresh_token: str | None
    expires: int
    expires_in: int
    user_id: int


class Tokens:
    """Every token the OAuth server issued, for all portals."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.access: dict[str, AccessGrant] = {}
        self.refresh: dict[str, RefreshGrant] = {}

    def issue(self, portal: str, user_id: int, ttl: int, now: float, with_refresh: bool = True) -> Grant:
        """A new access token (and refresh token); earlier tokens stay as they are."""
        access = secrets.token_hex(35)
        refresh = secrets.token_hex(16) if with_refresh else None
        expires = int(now) + ttl
        with self.lock:
            self.access[access] = AccessGrant(portal, user_id, expires)
            if refresh is not None:
                self.refresh[refresh] = RefreshGrant(portal, user_id)
        return Grant(access, refresh, expires, ttl, user_id)

    def check(self, token: str, portal: str, now: float) -> str | None:
        """None when `token` authorises a call on `portal`; else `invalid_token` or `expired_token`.

        A token of another portal is as unknown here as a made-up one.
        """
        with self.lock:
            grant = self.access.get(token)
        if grant is None or grant.portal != portal:
            return "invalid_token"
        if grant.expires <= now:  # `expires <= time()`, as the REST core compares
            return "expired_token"
        return None

    def redeem(self, token: str) -> RefreshGrant | None:
        """Use up a refresh token: its grant while it was active (now `used`), or None."""
        with self.lock:
            grant = self.refresh.get(token)
            if grant is None or grant.state != "active":
                return None
            grant.state = "used"
            return RefreshGrant(grant.portal, grant.user_id, "active")

    def owner(self, token: str) -> str | None:
        """The portal a refresh token was issued for, whatever its state (to count refresh calls)."""
        with self.lock:
            grant = self.refresh.get(token)
        return None if grant is None else grant.portal

    def revoke(self, portal: str, access: bool = True, refresh: bool = True) -> None:
        """Make the portal's access tokens unknown and/or its refresh tokens unusable."""
        with self.lock:
            if access:
                self.access = {token: grant for token, grant in self.access.items() if grant.portal != portal}
            if refresh:
                for grant in self.refresh.values():
                    if grant.portal == portal:
                        grant.state = "revoked"

    def expire(self, portal: str, now: float) -> None:
        """Every access token of the portal expires now (refresh tokens still work)."""
        with self.lock:
            for grant in self.access.values():
                if grant.portal == portal:
                    grant.expires = min(grant.expires, now)

    def counts(self, portal: str, now: float) -> dict[str, int]:
        """How many of the portal's tokens still work, for the control API."""
        with self.lock:
            live = sum(1 for grant in self.access.values() if grant.portal == portal and grant.expires > now)
            active = sum(1 for grant in self.refresh.values() if grant.portal == portal and grant.state == "active")
        return {"access_tokens": live, "refresh_tokens": active}

    def forget(self, portal: str | None = None) -> None:
        """Drop the tokens of one portal, or all of them (sandbox reset)."""
        with self.lock:
            if portal is None:
                self.access.clear()
                self.refresh.clear()
                return
            self.access = {token: grant for token, grant in self.access.items() if grant.portal != portal}
            self.refresh = {token: grant for token, grant in self.refresh.items() if grant.portal != portal}


@dataclass
class AppServer:
    """What all application-mode portals share: the token store and the URL clients reach the sandbox at."""

    tokens: Tokens = field(default_factory=Tokens)
    base_url: str = "http://127.0.0.1"

    @property
    def server_endpoint(self) -> str:
        """`auth[server_endpoint]`: the OAuth server's REST URL."""
        return f"{self.base_url}/oauth/rest/"

    @property
    def oauth_url(self) -> str:
        """The token endpoint an application refreshes at."""
        return f"{self.base_url}/oauth/token/"

    def client_endpoint(self, name: str) -> str:
        """`auth[client_endpoint]` of the portal `name`."""
        return f"{self.base_url}/portals/{name}/rest/"


@dataclass
class Binding:
    """One `event.bind`: an online handler URL, or an offline subscription (no handler)."""

    id: int
    event: str
    handler: str
    user_id: int
    offline: bool
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OfflineRow:
    """A row of the offline queue (`b_rest_event_offline`): reserved by `process_id`, or marked an error."""

    id: int
    timestamp: datetime
    event_name: str
    data: Any
    additional: dict[str, Any]
    message_id: str
    process_id: str = ""
    error: int = 0


@dataclass
class AppState:
    """The installed application as one portal sees it."""

    name: str
    server: AppServer
    installed: bool = False
    bindings: list[Binding] = field(default_factory=list)
    offline: dict[int, OfflineRow] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)
    hit: int = 0
    """Counts the portal's hits (REST requests and control changes): ONOFFLINEEVENT with minTimeout=0
    is sent once per hit."""
    signals: dict[int, tuple[float, int]] = field(default_factory=dict)
    """When (time, hit) each ONOFFLINEEVENT binding was last notified."""

    def new_id(self, kind: str) -> int:
        """Next id of `kind` ("binding", "offline"); ids are never reused."""
        value = self.next_ids.get(kind, 1)
        self.next_ids[kind] = value + 1
        return value

    @property
    def client_endpoint(self) -> str:
        """This portal's REST URL."""
        return self.server.client_endpoint(self.name)
