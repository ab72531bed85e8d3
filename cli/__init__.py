"""The ``flask --app app ...`` commands, grouped by purpose: ``rules`` (check a rules file), ``run`` (worker,
scheduler, health), ``operate`` (audit, report, status, failed, reconcile) and ``portals`` (application mode);
``sandbox`` is the sandbox's."""

from __future__ import annotations

from flask import Flask

from cli import operate, portals, rules, run
from sandbox.cli import sandbox_command


def init_app(app: Flask) -> None:
    for command in (rules.rules_group, *run.COMMANDS, *operate.COMMANDS, *portals.COMMANDS, sandbox_command):
        app.cli.add_command(command)
