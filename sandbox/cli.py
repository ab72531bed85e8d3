"""`flask --app app sandbox`: run the sandbox portal in the foreground."""

from __future__ import annotations

import click

from sandbox.config import SandboxConfig
from sandbox.seed import LAYOUTS, with_layout
from sandbox.server import serve


def _config(**options: object) -> SandboxConfig:
    """SandboxConfig from the options that were given; unset ones keep their defaults."""
    return SandboxConfig(**{name: value for name, value in options.items() if value is not None})  # type: ignore[arg-type]


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8700, show_default=True, type=int, help="Port to listen on.")
@click.option("--seed", default="demo", show_default=True,
              help='"demo", N generated tasks, "N:M" (N tasks, M time entries), or "".')
@click.option("--layout", type=click.Choice(LAYOUTS), default="dense", show_default=True,
              help="How generated task and entry IDs are spread (N or N:M seeds).")
@click.option("--secret", envvar="SANDBOX_SECRET", help="Webhook code in the URL (random if unset).")
@click.option("--application-token", envvar="SANDBOX_APPLICATION_TOKEN", help="auth[application_token] of events.")
@click.option("--member-id", envvar="SANDBOX_MEMBER_ID", help="auth[member_id] of events.")
@click.option("--handler-url", envvar="SANDBOX_HANDLER_URL", help="Where task events are POSTed.")
@click.option("--rate", type=float, help="Request budget drain per second (default 2).")
@click.option("--burst", type=int, help="Request budget size; 0 disables it (default 50).")
@click.option("--portals", envvar="SANDBOX_PORTALS", help='Application-mode portals to create, e.g. "alpha,beta".')
@click.option("--app-client-id", envvar="SANDBOX_APP_CLIENT_ID", help="The application's client id (OAuth).")
@click.option("--app-client-secret", envvar="SANDBOX_APP_CLIENT_SECRET", help="The application's client secret.")
def sandbox_command(host: str, port: int, seed: str, layout: str, **options: object) -> None:
    """Serve a simulated Bitrix24 portal until Ctrl-C."""
    config = _config(**options)
    try:
        seed = with_layout(seed, layout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--layout") from None
    seed_value: str | int | None = int(seed) if seed.isdigit() else (seed or None)  # "N:M" passes as text
    click.echo(f"Sandbox portal on http://{host}:{port} (seed: {seed or 'none'})")
    click.echo(f"B24_WEBHOOK_URL=http://{host}:{port}/rest/{config.user_id}/{config.secret}/")
    if config.handler_url:
        click.echo(f"Task events go to {config.handler_url}")
    if config.portals:
        click.echo(f"Application-mode portals {config.portals} at http://{host}:{port}/portals/<name>/rest/")
        click.echo(f"B24_OAUTH_URL=http://{host}:{port}/oauth/token/")
        click.echo(f"B24_APP_CLIENT_ID={config.app_client_id}")
        click.echo(f"B24_APP_CLIENT_SECRET={config.app_client_secret}")
    serve(config, host, port, seed_value)
