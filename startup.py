"""What every process checks before it does anything: the settings and the rules, or one line and an exit.

Kept free of the web and REST stacks, so that gunicorn's master can run the same check before it forks any
worker (and before gevent patches them).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from config.rules import RuleSet
from config.settings import ConfigError, Settings, load_settings
from policies import load_policy_rules

CONFIG_ERROR_EXIT = 3
"""Exit status of a process whose configuration cannot be used. 3 is gunicorn's WORKER_BOOT_ERROR: a web
worker that exits with it makes the master stop instead of restarting it forever."""


def load_configuration(**overrides: object) -> tuple[Settings, RuleSet]:
    """Read the environment and the rules file (raises ``ConfigError`` naming the variable or rules key).

    A rules file without rules would enforce nothing, silently: refused against a real portal; against the
    sandbox it is allowed (the app logs a warning), so a newcomer can start from nothing.
    """
    settings = load_settings(**overrides)
    rules = load_policy_rules(settings.rules_file)
    if not rules.rules and not settings.uses_sandbox:
        raise ConfigError(f"rules file {settings.rules_file}: no rules, so nothing would be enforced "
                          "(add one; see docs/rules.md)")
    return settings, rules


def configuration_or_exit() -> tuple[Settings, RuleSet]:
    """``load_configuration``, or exit with one line: an operator's mistake, never a traceback."""
    try:
        return load_configuration()
    except ConfigError as exc:
        exit_on_config_error(exc)


def exit_on_config_error(error: ConfigError) -> NoReturn:
    print(f"taskwarden: configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(CONFIG_ERROR_EXIT)
