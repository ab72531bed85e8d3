"""``flask --app app portals [--json]`` and ``portals rotate-key``: the installed portals (application mode)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

import keys
from cli.errors import operator_errors
from logging_setup import log_to_stderr
from portals import registry
from runtime import Runtime
from workers.status import budget_left


def _runtime() -> Runtime:
    log_to_stderr()
    rt: Runtime = current_app.extensions["taskwarden"]
    if not rt.settings.app_mode:
        raise click.ClickException("not in application mode (B24_APP_CLIENT_ID is not set)")
    return rt


@click.group("portals", cls=AppGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list, for machines.")
@click.pass_context
@with_appcontext
@operator_errors
def portals_group(ctx: click.Context, as_json: bool) -> None:
    """The installed portals, one line each: member_id, domain, status, token expiry, last event, budget left,
    queued evaluations (application mode)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = portal_rows(_runtime())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['member_id']}  {row['domain']:<32} {row['status']:<16} token until "
                   f"{_when(row['token_expires_at'])}  last event {_when(row['last_event_at'])}  "
                   f"budget {row['budget_left']}  queued {row['queued']}")
    if not rows:
        click.echo("no portal installed")


@portals_group.command("rotate-key")
@with_appcontext
@operator_errors
def rotate_key_command() -> None:
    """Re-encrypt every stored token under TASKWARDEN_SECRET_KEY (old keys in TASKWARDEN_OLD_SECRET_KEYS)."""
    rt = _runtime()
    click.echo(f"re-encrypted the tokens of {registry.reseal_all(rt.redis, rt.box)} portal(s) under the current key")


def portal_rows(rt: Runtime) -> list[dict[str, Any]]:
    """What ``portals`` shows, as plain data; never a token."""
    rows = []
    for member_id in registry.member_ids(rt.redis):
        record = registry.load(rt.redis, rt.box, member_id)
        if record is None:
            continue
        last = rt.redis.get(keys.last_event(member_id))
        rows.append({"member_id": member_id, "domain": record.domain, "status": record.status,
                     "token_expires_at": record.expires_at or None,
                     "last_event_at": float(last) if last else None,
                     "budget_left": budget_left(rt.redis, member_id, rt.settings.b24_rate_limit,
                                                rt.settings.b24_rate_burst),
                     "queued": int(rt.redis.hlen(keys.waiting(member_id))),
                     "installed_at": record.installed_at or None})
    return rows


def _when(stamp: float | None) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M") if stamp else "-"


COMMANDS = (portals_group,)
