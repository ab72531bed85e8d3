"""The rules file: valid files load; every invalid one gets a message naming the rule and the key."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.rules import describe_rule
from config.rules import RulesError
from policies import load_policy_rules as load_rules
from policies import parse_policy_rules as parse_rules

CAP = {"name": "cap", "policy": "elapsed_cap", "params": {"max_seconds": 28800}}


class TestValidFiles:
    def test_shipped_rules_file(self) -> None:
        """config/rules.yaml, which `make run` uses, is valid and subscribes to both task events."""
        ruleset = load_rules(Path(__file__).parent.parent / "config" / "rules.yaml")
        assert ruleset.subscribed_events == {"ONTASKADD", "ONTASKUPDATE"}
        assert ruleset.params(ruleset.rules[0]).max_seconds == 28800

    def test_defaults(self) -> None:
        """Mode, events, sweep and action take the documented defaults."""
        ruleset = parse_rules({"rules": [CAP]})
        rule = ruleset.rules[0]
        assert (rule.mode, rule.events, rule.sweep) == ("enforce", ("ONTASKADD", "ONTASKUPDATE"), True)
        assert ruleset.params(rule).action == "clamp"
        assert ruleset.timezone == "UTC" and ruleset.sweeps["tasks"] == "*/15 * * * *"

    def test_match_accepts_a_single_value(self) -> None:
        """``group_id: 12`` means ``[12]``."""
        ruleset = parse_rules({"rules": [{**CAP, "match": {"group_id": 12, "status": [2, 3]}}]})
        assert ruleset.rules[0].match.group_id == [12]


class TestInvalidFiles:
    @pytest.mark.parametrize(("raw", "expected"), [
        ({"rules": [{**CAP, "params": {"max_seconds": 0}}]}, "rule 'cap': params.max_seconds: Input should be greater than 0"),
        ({"rules": [{**CAP, "params": {}}]}, "rule 'cap': params.max_seconds: Field required"),
        ({"rules": [{**CAP, "params": {"max_seconds": 1, "action": "shrink"}}]}, "rule 'cap': params.action:"),
        ({"rules": [{**CAP, "params": {"max_seconds": 1, "colour": "red"}}]}, "rule 'cap': params.colour: unknown key"),
        ({"rules": [{**CAP, "colour": "red"}]}, "rule 'cap': colour: unknown key"),
        ({"rules": [{**CAP, "policy": "teleport"}]}, "rule 'cap': policy: unknown policy 'teleport'"),
        ({"rules": [{**CAP, "policy": "deadline", "params": {}}]}, "rule 'cap': params: give set_if_missing"),
        ({"rules": [{**CAP, "policy": "deadline", "params": {"set_if_missing": {"workdays": 2, "hours": 3}}}]},
         "rule 'cap': params.set_if_missing: give exactly one of workdays or hours"),
        ({"rules": [{**CAP, "policy": "deadline", "params": {"set_if_missing": {"hours": 3, "at": "18:00"}}}]},
         "at applies to workdays only"),
        ({"rules": [{**CAP, "policy": "deadline", "params": {"set_if_missing": {"workdays": 2, "at": "25:00"}}}]},
         "rule 'cap': params.set_if_missing.at:"),
        ({"rules": [{**CAP, "policy": "deadline", "params": {"max_ahead": {"weeks": 2}}}]},
         "rule 'cap': params.max_ahead.weeks: unknown key"),
        ({"rules": [{**CAP, "policy": "mandatory_userfields", "params": {"fields": {}}}]}, "rule 'cap': params.fields:"),
        ({"rules": [{**CAP, "policy": "mandatory_userfields", "params": {"fields": {"project": {}}}}]},
         "'project' is not a task field name"),
        ({"rules": [{**CAP, "policy": "mandatory_userfields", "params": {"fields": {"UF_X": {"dflt": 1}}}}]},
         "rule 'cap': params.fields.UF_X.dflt: unknown key"),
        ({"rules": [CAP], "holidays": {"country": "XX"}}, "unknown holiday country 'XX'"),
        ({"rules": [CAP], "holidays": {"country": "DE", "subdivision": "ZZ"}}, "unknown subdivision 'ZZ'"),
        ({"rules": [{**CAP, "name": "Bad Name"}]}, "rule 'Bad Name': name: String should match pattern"),
        ({"rules": [{**CAP, "mode": "maybe"}]}, "rule 'cap': mode:"),
        ({"rules": [{**CAP, "events": ["ONTASKDELETE"]}]}, "rule 'cap': events.0:"),
        ({"rules": [CAP, CAP]}, "rule 'cap': name: duplicate rule name"),
        ({"rules": [{"policy": "elapsed_cap"}]}, "rule #1: name: Field required"),
        ({"rules": [CAP], "timezone": "Mars/Olympus"}, "timezone: unknown IANA time zone 'Mars/Olympus'"),
        ({"rules": [CAP], "sweeps": {"full": "every night"}}, "'every night' is not a cron expression"),
        ({"rules": [CAP], "surprise": 1}, "surprise: unknown key"),
        ({"rules": "cap"}, "rules: must be a list"),
        ({"rules": [CAP], "exemptions": [{"task_id": [1], "rules": ["nope"]}]}, "exemptions.0.rules: unknown rule 'nope'"),
    ])
    def test_table(self, raw: dict, expected: str) -> None:
        """Each mistake is reported with the rule's name and the key's path."""
        with pytest.raises(RulesError) as caught:
            parse_rules(raw, "rules.yaml")
        assert expected in str(caught.value)
        assert str(caught.value).startswith("rules file rules.yaml: ")

    def test_not_yaml(self, tmp_path: Path) -> None:
        """A file that is not YAML is reported as such, with its path."""
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - name: x\n   policy: y\n")
        with pytest.raises(RulesError) as caught:
            load_rules(path)
        assert str(caught.value) == (f"rules file {path}: not valid YAML: line 3, column 4: expected <block end>, "
                                     "but found '<block mapping start>'")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file names the file."""
        with pytest.raises(RulesError, match="cannot read"):
            load_rules(tmp_path / "absent.yaml")

    def test_python_tags_refused(self, tmp_path: Path) -> None:
        """safe_load refuses object-constructing tags instead of running them."""
        path = tmp_path / "rules.yaml"
        path.write_text("rules: !!python/object/apply:os.system ['true']")
        with pytest.raises(RulesError, match="not valid YAML"):
            load_rules(path)


class TestDescribe:
    def test_one_line_per_rule(self) -> None:
        """The description says what the rule does, where, when and in which mode."""
        ruleset = parse_rules({"rules": [{**CAP, "name": "cap-time-entries", "mode": "audit",
                                          "match": {"group_id": [12]},
                                          "params": {"max_seconds": 28800, "note": " (capped)"}}]})
        line = describe_rule(ruleset, ruleset.rules[0])
        assert line == ("cap-time-entries: time entries over 8h 0m are clamped to 8h 0m and '(capped)' appended "
                        "to the comment, tasks with group 12, on ONTASKADD, ONTASKUPDATE, sweeps "
                        "[audit only: records, changes nothing]")

    def test_other_policies(self) -> None:
        """deadline and mandatory_userfields rules get their own plain descriptions."""
        ruleset = parse_rules({"rules": [
            {"name": "dl", "policy": "deadline", "params": {"set_if_missing": {"workdays": 2, "at": "18:00"},
                                                             "max_ahead": {"days": 30}}},
            {"name": "uf", "policy": "mandatory_userfields", "sweep": False,
             "params": {"fields": {"UF_A": {"default": "x"}, "UF_B": None}, "enforce_definition": True}}]})
        dl, uf = (describe_rule(ruleset, rule) for rule in ruleset.rules)
        assert dl == ("dl: tasks without a deadline get one 2 working day(s) after creation at 18:00; deadlines more "
                      "than 30 day(s) after creation are moved back to that limit; completed tasks are left alone, "
                      "on ONTASKADD, ONTASKUPDATE, sweeps [enforce]")
        assert uf == ("uf: empty fields are filled: UF_A (default 'x'), UF_B (reported when empty); their definitions "
                      "are made mandatory, on ONTASKADD, ONTASKUPDATE [enforce]")


_scalars = st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=12) | st.sampled_from(
        ["elapsed_cap", "deadline", "mandatory_userfields", "enforce", "audit", "ONTASKADD", "18:00", "UF_X", "DE"])
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(
                               ["name", "policy", "params", "mode", "events", "match", "max_seconds", "action",
                                "set_if_missing", "max_ahead", "workdays", "hours", "at", "fields", "default",
                                "timezone", "holidays", "country", "rules", "exemptions", "until", "sweeps"])
                               | st.text(max_size=6), inner, max_size=5), max_leaves=25)


class TestFuzzedFiles:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_values)
    def test_any_structure_loads_or_is_refused(self, raw: object) -> None:
        """Any YAML-shaped structure either loads or raises RulesError; never another exception."""
        with contextlib.suppress(RulesError):
            parse_rules(raw)
