"""The application-mode part of the sandbox control client (`SandboxControl` inherits it).

Create portals, play the administrator who installs and removes the application, break the OAuth server,
and read what the application bound and what its offline queue holds. The data and log methods of
`SandboxControl` take `portal=<name>` to act on one of these portals.
"""

from __future__ import annotations

from typing import Any


class AppsControl:
    """Application-mode calls of the control API (`/_sandbox/apps/`)."""

    def _call(self, verb: str, path: str, portal: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # SandboxControl sends the request

    def apps(self) -> dict[str, Any]:
        """`{oauth_url, server_endpoint, client_id, client_secret, portals}` of the running sandbox."""
        return self._call("GET", "/apps")

    def oauth_url(self) -> str:
        """The token endpoint the application refreshes at."""
        return str(self.apps()["oauth_url"])

    def app_credentials(self) -> tuple[str, str]:
        """`(client_id, client_secret)` the OAuth server accepts."""
        info = self.apps()
        return str(info["client_id"]), str(info["client_secret"])

    def add_portal(self, name: str, rate: float = 2.0, burst: int = 50, access_ttl: int = 3600,
                   offline_extended: bool = True, seed: str | int | None = None, **settings: Any) -> dict[str, Any]:
        """Create an application-mode portal; its `member_id`, `domain`, `client_endpoint`, `application_token`.

        `settings` are further portal settings (`is_admin`, `v3_enabled`, `user_tz`, ...).
        """
        body = {"name": name, "rate": rate, "burst": burst, "access_ttl": access_ttl,
                "offline_extended": offline_extended, "seed": seed, **settings}
        return self._call("POST", "/apps/portals", json=body)

    def portal_info(self, name: str) -> dict[str, Any]:
        """Identity, install state, bindings and queue sizes, tokens still working."""
        return self._call("GET", f"/apps/portals/{name}")

    def remove_portal(self, name: str) -> None:
        """Delete the portal and its tokens."""
        self._call("DELETE", f"/apps/portals/{name}")

    def issue_tokens(self, name: str) -> dict[str, Any]:
        """Install without a callback and get a fresh token pair, as an `auth` block (`access_token`,
        `refresh_token`, `expires`, `client_endpoint`, `member_id`, `application_token`, ...)."""
        return self._call("POST", f"/apps/portals/{name}/tokens")

    def install_detail(self, name: str, url: str) -> dict[str, Any]:
        """Install and POST the installation callback to `url`: the delivery record (`status`, `response`,
        `error`, and the `payload` that was sent)."""
        return self._call("POST", f"/apps/portals/{name}/install", json={"url": url})

    def install(self, name: str, url: str) -> tuple[int | None, str | None]:
        """Install and POST the installation callback to `url`: the receiver's `(status, body)`
        (`(None, None)` when it could not be reached)."""
        record = self.install_detail(name, url)
        return record["status"], record["response"]

    def forged_install(self, url: str, portal: str | None = None, event: str = "ONAPPINSTALL",
                       data: dict[str, Any] | None = None, **auth_fields: Any) -> tuple[int | None, str | None]:
        """POST an installation callback nobody issued: tokens the OAuth server does not know, on `portal`'s
        identity (or a made-up one), `auth_fields` replacing any `auth[...]` value."""
        record = self._call("POST", "/apps/install-forged",
                            json={"url": url, "portal": portal, "event": event, "data": data, "auth": auth_fields})
        return record["status"], record["response"]

    def uninstall(self, name: str, clean: bool = False, event: str = "ONAPPUNINSTALL") -> list[dict[str, Any]]:
        """Remove the application (tokens revoked, bindings and queue gone); the deliveries to the bound
        ONAPPUNINSTALL handlers (`event="ONAPPSUNINSTALL"` posts the docs' spelling)."""
        return self._call("POST", f"/apps/portals/{name}/uninstall", json={"clean": clean, "event": event})[
            "deliveries"]

    def revoke_refresh(self, name: str) -> None:
        """Every refresh token of the portal stops working: the next refresh gets `invalid_grant`."""
        self._call("POST", f"/apps/portals/{name}/revoke-refresh")

    def expire_tokens(self, name: str) -> None:
        """Every access token of the portal expires now: REST answers `expired_token`."""
        self._call("POST", f"/apps/portals/{name}/expire-tokens")

    def new_application_token(self, name: str, token: str | None = None) -> str:
        """Give the application a new `application_token` on the portal; returns it."""
        return str(self._call("POST", f"/apps/portals/{name}/application-token", json={"token": token})[
            "application_token"])

    def oauth_log(self, name: str | None = None) -> list[dict[str, Any]]:
        """Token-endpoint calls (`portal`, `grant_type`, `status`, `error`), all or those naming `name`'s tokens."""
        params = {} if name is None else {"portal": name}
        return self._call("GET", "/apps/oauth/calls", params=params)

    def oauth_calls(self, name: str) -> int:
        """How many token-endpoint calls named a refresh token of the portal `name`."""
        return len(self.oauth_log(name))

    def oauth_fault(self, status: int = 503, error: str = "temporarily_unavailable",
                    description: str = "Service temporarily unavailable", times: int = 1, delay: float = 0.0) -> None:
        """Make the next `times` token-endpoint calls fail (`status=0` drops the connection, `status=200` only
        delays by `delay`)."""
        self._call("POST", "/apps/oauth/faults", json={"status": status, "error": error, "description": description,
                                                       "times": times, "delay": delay})

    def clear_oauth_faults(self) -> None:
        """Remove every token-endpoint fault."""
        self._call("DELETE", "/apps/oauth/faults")

    def bindings(self, name: str) -> list[dict[str, Any]]:
        """What the application bound on the portal: `id, event, handler, auth_type, offline, options`."""
        return self._call("GET", f"/apps/portals/{name}/bindings")

    def offline_rows(self, name: str) -> list[dict[str, Any]]:
        """The portal's offline queue as stored: `id, timestamp, event_name, data, additional, message_id,
        process_id, error`."""
        return self._call("GET", f"/apps/portals/{name}/offline")
