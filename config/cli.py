"""``flask --app app rules check [FILE]``: validate a rules file and say what each rule does."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from config.describe import describe_rule
from config.rules import RulesError, load_rules

rules_cli = AppGroup("rules", help="Inspect the rules file.")


@rules_cli.command("check")
@click.argument("file", required=False)
def check_command(file: str | None) -> None:
    """Validate FILE (default: RULES_FILE) and print one line per rule."""
    path = file or current_app.extensions["taskwarden"].settings.rules_file
    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        click.echo(f"{path}: invalid", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1) from None
    click.echo(f"{path}: {len(ruleset.rules)} rule(s), time zone {ruleset.timezone}")
    for rule in ruleset.rules:
        click.echo(f"  {describe_rule(ruleset, rule)}")


def init_app(app: Flask) -> None:
    app.cli.add_command(rules_cli)
