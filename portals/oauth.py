"""The OAuth server (``B24_OAUTH_URL``): exchanging a refresh token for a new pair, server to server.

The client secret goes only here, never to a portal. Errors never carry the request URL: its query string
holds the secret and the refresh token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from config.settings import Settings

TIMEOUT_SECONDS = (3.05, 15.0)


@dataclass(frozen=True)
class Grant:
    """What the OAuth server answered: a new token pair and whose portal it is."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    client_endpoint: str
    member_id: str
    scope: str


class OAuthRefused(Exception):
    """The OAuth server said no (``invalid_grant``: the refresh token is used, revoked or expired)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"the OAuth server refused the refresh token: {code}")


class OAuthUnreachable(Exception):
    """No usable answer from the OAuth server (network, timeout, 5xx, not JSON)."""


def exchange(settings: Settings, refresh_token: str, session: requests.Session | None = None) -> Grant:
    """Trade ``refresh_token`` for a new pair (``grant_type=refresh_token``, reference section 9)."""
    secret = settings.b24_app_client_secret.get_secret_value() if settings.b24_app_client_secret else ""
    params = {"grant_type": "refresh_token", "client_id": settings.b24_app_client_id or "",
              "client_secret": secret, "refresh_token": refresh_token}
    try:
        response = (session or requests).get(settings.b24_oauth_url, params=params, timeout=TIMEOUT_SECONDS,
                                             allow_redirects=False)
        body: Any = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise OAuthUnreachable(type(exc).__name__) from None
    if not isinstance(body, dict):
        raise OAuthUnreachable(f"HTTP {response.status_code}: not an OAuth answer")
    if "error" in body or response.status_code >= 400:
        if response.status_code >= 500:
            raise OAuthUnreachable(f"HTTP {response.status_code}")
        raise OAuthRefused(str(body.get("error") or f"HTTP_{response.status_code}")[:64])
    try:
        expires = float(body.get("expires") or time.time() + float(body.get("expires_in") or 3600))
        return Grant(access_token=str(body["access_token"]), refresh_token=str(body["refresh_token"]),
                     expires_at=expires, client_endpoint=str(body["client_endpoint"]),
                     member_id=str(body["member_id"]), scope=str(body.get("scope") or ""))
    except (KeyError, TypeError, ValueError):
        raise OAuthUnreachable("the OAuth answer lacks a token, the endpoint or the member_id") from None
