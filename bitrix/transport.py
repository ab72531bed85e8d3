"""HTTP transport for an inbound webhook: one pooled ``requests.Session``, timeouts, no policy.

Connection failures are retried by urllib3 (nothing reached the portal); everything else, including
5xx, is left to the client's retry rules because blind retries of a POST could repeat a write.
Redirects are not followed: a renamed portal answers 302 and a followed POST would become a GET.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bitrix.errors import TransportError
from config.portal import Portal

CONNECT_TIMEOUT_SECONDS = 3.05
READ_TIMEOUT_SECONDS = 65.0
"""A cloud request is cut off after 60 s; wait a little longer than that for its answer."""
USER_AGENT = "taskwarden/0.1"


@dataclass(frozen=True)
class RawResponse:
    status: int
    body: bytes
    replayed: bool = False


class Transport:
    """Sends one method call to the portal and returns the raw answer."""

    def __init__(self, portal: Portal, timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS,
                                                                     READ_TIMEOUT_SECONDS)) -> None:
        self._portal = portal
        self._timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16,
                              max_retries=Retry(total=3, connect=3, read=0, status=0, other=0,
                                                backoff_factor=0.3, allowed_methods=None))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})

    def __repr__(self) -> str:
        return f"Transport(portal={self._portal.id!r})"

    def send(self, method: str, params: dict[str, Any] | list[Any] | None, *, v3: bool = False,
             idempotency_key: str | None = None, access_token: str | None = None) -> RawResponse:
        """POST ``params`` as JSON (a list for positional ``task.*`` methods) to the method's URL; an installed
        application's ``access_token`` goes in the query string (``auth``), since a JSON list has no room for it.

        Raises:
            TransportError: no answer (connection refused, timeout, broken connection).
        """
        base = self._portal.v3_url if v3 else self._portal.webhook_url
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = self._session.post(f"{base}{method}", data=json.dumps(params if params is not None else {}),
                                          params={"auth": access_token} if access_token else None,
                                          headers=headers, timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            # Deliberately no `from exc`: the cause's text holds the request URL and so the secret.
            raise TransportError(method, "NETWORK_ERROR", type(exc).__name__) from None
        if response.status_code in (301, 302, 307, 308):
            raise TransportError(method, "PORTAL_MOVED", f"HTTP {response.status_code}: the portal address changed")
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return RawResponse(response.status_code, response.content, replayed)

    def close(self) -> None:
        self._session.close()
