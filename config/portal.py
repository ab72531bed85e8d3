"""The portal Taskwarden serves: where to call it and how to recognise its events.

Every Redis key, budget, lock and audit record is scoped by ``Portal.id`` so that one Taskwarden can
later serve many portals; code deep inside receives a ``Portal`` rather than reading settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config.settings import Settings
from config.webhook import split_webhook_url


@dataclass(frozen=True)
class Portal:
    """One Bitrix24 portal. Secrets are kept out of ``repr`` so they never reach a log line.

    ``kind`` is ``webhook`` (calls go to the inbound webhook's URL, which holds its secret) or ``app`` (an
    installed application: calls go to the portal's ``client_endpoint`` with an OAuth access token, which
    the REST client adds; ``secret`` is then empty).
    """

    id: str
    rest_base: str
    user_id: int
    secret: str = field(repr=False)
    application_token: str = field(repr=False)
    member_id: str | None = None
    rate: float = 2.0
    burst: int = 50
    operating_limit: float = 480.0
    kind: str = "webhook"

    @property
    def webhook_url(self) -> str:
        """The classic base: ``{base}{user}/{secret}/`` for a webhook, the client endpoint for an app."""
        return self.rest_base if self.kind == "app" else f"{self.rest_base}{self.user_id}/{self.secret}/"

    @property
    def v3_url(self) -> str:
        """The REST 3.0 base: ``{base}api/{user}/{secret}/`` for a webhook, ``{endpoint}api/`` for an app."""
        return f"{self.rest_base}api/" if self.kind == "app" else f"{self.rest_base}api/{self.user_id}/{self.secret}/"

    @property
    def domain(self) -> str:
        return urlsplit(self.rest_base).hostname or ""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be written anywhere (logs, errors, audit, metrics)."""
        return tuple(value for value in (self.secret, self.application_token) if value)


def portal_from_settings(settings: Settings) -> Portal:
    """The one portal of this deployment: the configured webhook, or else the sandbox portal."""
    if settings.b24_webhook_url is not None and settings.b24_application_token is not None:
        url = settings.b24_webhook_url.get_secret_value()
        token = settings.b24_application_token.get_secret_value()
        member_id = settings.b24_member_id
    else:
        url = f"{settings.sandbox_url.rstrip('/')}/rest/1/{settings.sandbox_secret.get_secret_value()}/"
        token = settings.sandbox_application_token.get_secret_value()
        member_id = settings.b24_member_id or settings.sandbox_member_id
    base, user_id, secret = split_webhook_url(url)
    return Portal(
        id=_portal_id(base, member_id),
        rest_base=base,
        user_id=user_id,
        secret=secret,
        application_token=token,
        member_id=member_id,
        rate=settings.b24_rate_limit,
        burst=settings.b24_rate_burst,
        operating_limit=settings.b24_operating_limit,
    )


def _portal_id(rest_base: str, member_id: str | None) -> str:
    # member_id survives domain renames; without it, a short hash of the portal's address.
    if member_id:
        return member_id
    return hashlib.sha1(rest_base.encode(), usedforsecurity=False).hexdigest()[:12]
