"""CLI commands through Flask's test runner: rules check and audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

import audit
from audit import Decision


class TestRulesCheck:
    def test_valid_file(self, runner: Any) -> None:
        """A valid file prints its rule count and one line per rule."""
        result = runner.invoke(args=["rules", "check"])
        assert result.exit_code == 0
        assert "1 rule(s), time zone Europe/Berlin" in result.output
        assert "cap-time-entries: time entries over 8h 0m are clamped to 8h 0m" in result.output

    def test_invalid_file(self, runner: Any, tmp_path: Path) -> None:
        """An invalid file exits 1 and lists each problem with rule and key."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("rules:\n  - {name: x, policy: elapsed_cap, params: {max_seconds: 0, colour: red}}\n")
        result = runner.invoke(args=["rules", "check", str(bad)])
        assert result.exit_code == 1
        assert "rule 'x': params.max_seconds: Input should be greater than 0" in result.output
        assert "rule 'x': params.colour: unknown key" in result.output


class TestAuditCommand:
    def test_table(self, app: Flask, runner: Any) -> None:
        """Recorded decisions print as a table, filtered by task."""
        rt = app.extensions["taskwarden"]
        audit.record(rt.redis, rt.portal.id, [
            Decision("cap", "elapsed_cap", "enforce", 7, "entry:1", 36000, 28800, "changed", "event"),
            Decision("cap", "elapsed_cap", "enforce", 8, "entry:2", 40000, 28800, "changed", "event")])
        result = runner.invoke(args=["audit", "--task", "7"])
        assert result.exit_code == 0
        lines = result.output.strip().splitlines()
        assert lines[0].split()[:4] == ["time", "rule", "task_id", "entity"]
        assert len(lines) == 2 and "entry:1" in lines[1] and "36000" in lines[1]

    def test_empty(self, runner: Any) -> None:
        """No decisions: a sentence, not an empty table."""
        assert "no decisions recorded" in runner.invoke(args=["audit"]).output


class TestOperatorMistakes:
    """What an operator causes (Redis down, portal unreachable, a wrong webhook secret) is one line naming the
    cause and what to check, exit 1, and no traceback, in every command."""

    COMMANDS = (["audit"], ["report"], ["status"], ["failed"], ["reconcile", "--sweep", "tasks"],
                ["health", "worker"])

    def test_redis_down(self, make_app: Callable[..., Flask]) -> None:
        runner = make_app(redis_url="redis://127.0.0.1:9/0").test_cli_runner()
        for args in self.COMMANDS:
            result = runner.invoke(args=args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.strip().splitlines() == [
                "taskwarden: Redis at 127.0.0.1:9/0 does not answer (ConnectionError): check REDIS_URL and that "
                "Redis is running"], args
            assert result.exception is None or isinstance(result.exception, SystemExit)

    def test_portal_unreachable(self, make_app: Callable[..., Flask]) -> None:
        runner = make_app(sandbox_url="http://127.0.0.1:9").test_cli_runner()
        result = runner.invoke(args=["reconcile", "--sweep", "tasks"])
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines()[-1] == (
            "taskwarden: the portal does not answer (ConnectionError): check SANDBOX_URL (is the sandbox running?) "
            "and the network")
        assert "Traceback" not in result.output

    def test_wrong_webhook_secret(self, make_app: Callable[..., Flask]) -> None:
        runner = make_app(sandbox_secret="not-the-secret").test_cli_runner()
        result = runner.invoke(args=["reconcile", "--sweep", "tasks"])
        assert result.exit_code == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("taskwarden: the portal refused our credentials (")
        assert "not-the-secret" not in result.output
