"""The policies, found by name: every module of this package that ends in ``POLICY = Policy(...)``.

Adding a policy is adding such a module; the rules schema (``PARAMS``), ``rules check``, evaluations and
sweeps read everything they need from its ``Policy`` record.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from config.rules import RuleSet, load_rules, parse_rules
from policies.base import Policy


def _discover() -> dict[str, Policy]:
    found: dict[str, Policy] = {}
    for module in sorted(info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])):
        record = getattr(importlib.import_module(f"{__name__}.{module}"), "POLICY", None)
        if isinstance(record, Policy):
            found[record.name] = record
    return found


POLICIES: dict[str, Policy] = _discover()
PARAMS = {name: policy.params for name, policy in POLICIES.items()}
"""Each policy's params model by name: what the rules file's ``params`` are validated against."""


def policy(name: str) -> Policy:
    """The policy of a rule's ``policy`` key (checked when the rules were loaded, so always present)."""
    return POLICIES[name]


def load_policy_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file against the policies found here (raises ``RulesError``)."""
    return load_rules(path, PARAMS)


def parse_policy_rules(raw: Any, source: str = "<rules>") -> RuleSet:
    """Validate an already-parsed rules file against the policies found here (raises ``RulesError``)."""
    return parse_rules(raw, PARAMS, source)
