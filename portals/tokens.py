"""An installed portal's access token for REST calls, refreshed when it expires: once per portal at a time.

Refreshing rotates the pair, so two processes refreshing at once would each spend the same refresh token
and one of them would be left with ``invalid_grant``. A Redis lock per portal makes one process refresh;
the others wait for it and take the pair it stored. The new pair is stored before it is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress

import structlog
from redis import Redis
from redis.exceptions import LockError

import keys
from bitrix.errors import AuthError, TransportError
from config.settings import Settings
from portals import registry
from portals.crypto import Box
from portals.oauth import Grant, OAuthRefused, OAuthUnreachable, exchange

log = structlog.get_logger(__name__)

REFRESH_AHEAD_SECONDS = 300
"""A token with less than this left is refreshed before use (SPEC: five minutes)."""
LOCK_SECONDS = 30


class PortalInactive(AuthError):
    """The portal was uninstalled or needs reinstalling: its jobs stop, nothing is retried."""


class TokenRefreshFailed(TransportError):
    """The OAuth server could not be reached: the job waits and retries, the portal stays active."""


class PortalTokens:
    """The token source of one portal for the REST client."""

    def __init__(self, redis: Redis, box: Box, settings: Settings, member_id: str,
                 oauth: Callable[[Settings, str], Grant] = exchange) -> None:
        self._redis, self._box, self._settings, self._member_id, self._oauth = redis, box, settings, member_id, oauth
        # The token in hand: a job makes several calls, and Redis is read again only near its expiry.
        self._token, self._expires_at = "", 0.0

    def access_token(self) -> str:
        if self._token and self._expires_at - time.time() >= REFRESH_AHEAD_SECONDS:
            return self._token
        record = self._record()
        if record.expires_at - time.time() < REFRESH_AHEAD_SECONDS:
            return self.refresh(stale=record.access_token)
        self._token, self._expires_at = record.access_token, record.expires_at
        return record.access_token

    def refresh(self, stale: str) -> str:
        """A fresh access token: ours if we win the lock, else the one the winner stored."""
        lock = self._redis.lock(keys.token_refresh_lock(self._member_id), timeout=LOCK_SECONDS,
                                blocking_timeout=LOCK_SECONDS + 5)
        try:
            acquired = lock.acquire()
        except LockError:
            acquired = False
        if not acquired:
            raise TokenRefreshFailed("oauth", "REFRESH_BUSY", "another process is still refreshing this portal's token")
        try:
            record = self._record()
            if record.access_token != stale and record.expires_at - time.time() >= REFRESH_AHEAD_SECONDS:
                self._token, self._expires_at = record.access_token, record.expires_at
                return record.access_token  # another process refreshed while we waited
            try:
                grant = self._oauth(self._settings, record.refresh_token)
            except OAuthRefused as refused:
                if refused.code == "invalid_grant":
                    registry.set_status(self._redis, self._member_id, registry.NEEDS_REINSTALL)
                    log.error("portal.needs_reinstall", member_id=self._member_id,
                              hint="the refresh token is no longer valid: reinstall the application in the portal")
                    raise PortalInactive("oauth", "invalid_grant", "reinstall the application") from None
                raise TokenRefreshFailed("oauth", refused.code, str(refused)) from None
            except OAuthUnreachable as exc:
                raise TokenRefreshFailed("oauth", "OAUTH_UNREACHABLE", str(exc)) from None
            registry.store_tokens(self._redis, self._box, self._member_id, grant.access_token, grant.refresh_token,
                                  grant.expires_at)
            self._token, self._expires_at = grant.access_token, grant.expires_at
            log.info("portal.token_refreshed", member_id=self._member_id)
            return grant.access_token
        finally:
            with suppress(LockError):
                lock.release()

    def _record(self) -> registry.PortalRecord:
        record = registry.load(self._redis, self._box, self._member_id)
        if record is None or record.status != registry.ACTIVE:
            raise PortalInactive("oauth", "PORTAL_INACTIVE",
                                 f"portal {self._member_id} is {record.status if record else 'not installed'}")
        return record
