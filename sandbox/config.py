"""The sandbox portal's settings: one dataclass, overridable per test through the control API."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


def _token() -> str:
    return secrets.token_hex(12)


def _member_id() -> str:
    return secrets.token_hex(16)


@dataclass
class SandboxConfig:
    """How the simulated portal behaves; defaults match a cloud portal on a standard plan."""

    user_id: int = 1
    secret: str = field(default_factory=_token)
    application_token: str = field(default_factory=_token)
    member_id: str = field(default_factory=_member_id)
    domain: str = "sandbox.bitrix24.test"
    handler_url: str | None = None
    events_paused: bool = False
    rate: float = 2.0
    burst: int = 50
    v3_enabled: bool = True
    elapsed_task_filter: bool = True
    """Whether task.elapseditem.getlist filters by TASK_ID (its manifest says so; the docs' table does not)."""
    is_admin: bool = True
    operating_limit: float = 480.0
    operating_cost: float = 0.005
    operating_costs: dict[str, float] = field(default_factory=dict)
    user_tz: str = "Europe/Moscow"
    server_tz: str = "Europe/Berlin"
    access_ttl: int = 3600
    """Seconds an OAuth access token lives (application mode, reference §9)."""
    offline_extended: bool = True
    """Whether the plan has `rest_offline_extended` (`event.offline.get` with `clear=0`)."""
    app_client_id: str = "local.taskwarden.sandbox"
    """The application's client id at the sandbox's OAuth server (sandbox-wide: read from the webhook portal)."""
    app_client_secret: str = "sandbox-client-secret"  # noqa: S105 - a development default
    """The application's client secret (sandbox-wide, like `app_client_id`)."""
    portals: str = ""
    """Comma-separated names of the application-mode portals created at start and at every reset."""

    def cost_of(self, method: str) -> float:
        """Simulated execution seconds of one call of `method` (reference §3.2)."""
        return float(self.operating_costs.get(method, self.operating_cost))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready copy for the control API."""
        return asdict(self)


_FIELD_NAMES = frozenset(f.name for f in fields(SandboxConfig))


def with_overrides(base: SandboxConfig, overrides: dict[str, Any]) -> SandboxConfig:
    """A copy of `base` with `overrides` applied.

    Raises:
        ValueError: an override names no field of SandboxConfig.
    """
    unknown = sorted(set(overrides) - _FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
    return replace(base, **overrides)
