"""The rules cookbook stays honest: every YAML example in docs/rules.md with a ``rules:`` key is a valid
rules file, and ``rules check`` can describe each of its rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cli.rules import describe_rule
from config.rules import RulesError
from policies import parse_policy_rules as parse_rules

RULES_DOC = Path(__file__).parent.parent / "docs" / "rules.md"
_YAML_BLOCK = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_RULES_KEY = re.compile(r"^rules:", re.MULTILINE)


def rule_blocks() -> list[str]:
    """The ```yaml blocks of docs/rules.md that are whole rules files (they have a top-level ``rules:``)."""
    text = RULES_DOC.read_text(encoding="utf-8")
    return [block for block in _YAML_BLOCK.findall(text) if _RULES_KEY.search(block)]


def first_line(block: str) -> str:
    return next((line.strip() for line in block.splitlines() if line.strip()), "<empty block>")


BLOCKS = rule_blocks()


def test_cookbook_has_at_least_eight_examples() -> None:
    assert len(BLOCKS) >= 8, f"docs/rules.md has only {len(BLOCKS)} rules examples"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{i + 1}:{first_line(b)}" for i, b in enumerate(BLOCKS)])
def test_example_is_a_valid_rules_file(block: str) -> None:
    where = f"docs/rules.md block starting {first_line(block)!r}"
    try:
        raw = yaml.safe_load(block)
        ruleset = parse_rules(raw, where)
        lines = [describe_rule(ruleset, rule) for rule in ruleset.rules]
    except (yaml.YAMLError, RulesError, ValueError) as exc:
        pytest.fail(f"{where}: {exc}")
    assert ruleset.rules, f"{where}: no rules"
    assert all(line.startswith(f"{rule.name}: ") for rule, line in zip(ruleset.rules, lines, strict=True))
    # An unquoted `at: 17:00` is read by YAML as a number and silently becomes 00:17: the docs must quote it.
    for rule in raw["rules"]:
        at = ((rule.get("params") or {}).get("set_if_missing") or {}).get("at")
        assert at is None or isinstance(at, str), f"{where}: rule {rule['name']!r}: quote the `at` time"
