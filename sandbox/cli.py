"""`flask --app app sandbox`: run the sandbox portal in the foreground."""

from __future__ import annotations

import click

from sandbox.config import SandboxConfig
from sandbox.server import serve


def _config(**options: object) -> SandboxConfig:
    """SandboxConfig from the options that were given; unset ones keep their defaults."""
    return SandboxConfig(**{name: value for name, value in options.items() if value is not None})  # type: ignore[arg-type]


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8700, show_default=True, type=int, help="Port to listen on.")
@click.option("--seed", default="demo", show_default=True,
              help='"demo", N generated tasks, "N:M" (N tasks, M time entries), or "".')
@click.option("--secret", envvar="SANDBOX_SECRET", help="Webhook code in the URL (random if unset).")
@click.option("--application-token", envvar="SANDBOX_APPLICATION_TOKEN", help="auth[application_token] of events.")
@click.option("--member-id", envvar="SANDBOX_MEMBER_ID", help="auth[member_id] of events.")
@click.option("--handler-url", envvar="SANDBOX_HANDLER_URL", help="Where task events are POSTed.")
@click.option("--rate", type=float, help="Request budget drain per second (default 2).")
@click.option("--burst", type=int, help="Request budget size; 0 disables it (default 50).")
def sandbox_command(host: str, port: int, seed: str, **options: object) -> None:
    """Serve a simulated Bitrix24 portal until Ctrl-C."""
    config = _config(**options)
    seed_value: str | int | None = int(seed) if seed.isdigit() else (seed or None)  # "N:M" passes as text
    click.echo(f"Sandbox portal on http://{host}:{port} (seed: {seed or 'none'})")
    click.echo(f"B24_WEBHOOK_URL=http://{host}:{port}/rest/{config.user_id}/{config.secret}/")
    if config.handler_url:
        click.echo(f"Task events go to {config.handler_url}")
    serve(config, host, port, seed_value)
