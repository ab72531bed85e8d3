"""atheris target: the rules loader must accept or refuse (RulesError) any YAML text, never crash."""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    import yaml

    from config.rules import RulesError
    from policies import parse_policy_rules as parse_rules


def test_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(4096)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # load_rules reports these as RulesError too
    with contextlib.suppress(RulesError):
        parse_rules(raw if raw is not None else {})


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
