"""Environment settings: valid defaults, and one clear message naming the variable when not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.portal import portal_from_settings
from config.settings import ConfigError, load_settings

ROOT = Path(__file__).parent.parent
SECRET = "xq9-very-secret-code"


class TestSettings:
    def test_defaults_use_the_sandbox(self) -> None:
        """Without B24_WEBHOOK_URL the sandbox portal stands in."""
        settings = load_settings(_env_file=None)
        assert settings.uses_sandbox
        portal = portal_from_settings(settings)
        assert portal.webhook_url.startswith("http://127.0.0.1:8700/rest/1/")

    @pytest.mark.parametrize(("values", "named"), [
        ({"b24_rate_limit": 0}, "B24_RATE_LIMIT"),
        ({"b24_rate_burst": "many"}, "B24_RATE_BURST"),
        ({"redis_url": "http://localhost"}, "REDIS_URL"),
        ({"log_format": "xml"}, "LOG_FORMAT"),
        ({"b24_webhook_url": f"https://x.bitrix24.com/rest/1/{SECRET}/"}, "B24_APPLICATION_TOKEN"),
        ({"b24_webhook_url": f"https://x.bitrix24.com/{SECRET}", "b24_application_token": "t"}, "B24_WEBHOOK_URL"),
    ])
    def test_invalid_values(self, values: dict, named: str) -> None:
        """Each invalid value is named, and a webhook secret is never echoed back."""
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None, **values)
        assert named in str(caught.value)
        assert SECRET not in str(caught.value)

    def test_real_portal(self) -> None:
        """A webhook URL is split into base, user and secret; the repr hides the secret and the token."""
        settings = load_settings(_env_file=None, b24_webhook_url=f"https://x.bitrix24.com/rest/7/{SECRET}/",
                                 b24_application_token="tok-123456", b24_member_id="m1")
        portal = portal_from_settings(settings)
        assert (portal.rest_base, portal.user_id, portal.id) == ("https://x.bitrix24.com/rest/", 7, "m1")
        assert portal.v3_url == f"https://x.bitrix24.com/rest/api/7/{SECRET}/"
        assert SECRET not in repr(portal) and "tok-123456" not in repr(portal)
        assert SECRET not in repr(settings)


class TestStartup:
    def test_importing_the_app_builds_nothing(self) -> None:
        """`import app` with an unusable environment succeeds: only calling the factory reads it."""
        env = {"PATH": "/usr/bin:/bin", "B24_RATE_BURST": "lots", "HOME": "/tmp", "REDIS_URL": "redis://127.0.0.1:9/0"}
        done = subprocess.run([sys.executable, "-c", "import app, threading; print(threading.active_count())"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "1", "")

    def test_invalid_environment_stops_with_one_line(self) -> None:
        """A process started with a bad variable exits non-zero with one message, no traceback."""
        env = {"PATH": "/usr/bin:/bin", "B24_RATE_BURST": "lots", "HOME": "/tmp"}
        done = subprocess.run([sys.executable, "-c", "import app; app.create_app()"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3
        assert "configuration error: B24_RATE_BURST" in done.stderr
        assert "Traceback" not in done.stderr

    def test_invalid_rules_file_stops_with_one_line(self, tmp_path: Path) -> None:
        """An invalid rules file stops the process with a message naming the rule and key."""
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules:\n  - {name: cap, policy: elapsed_cap, params: {max_seconds: -5}}\n")
        env = {"PATH": "/usr/bin:/bin", "RULES_FILE": str(rules), "HOME": "/tmp"}
        done = subprocess.run([sys.executable, "-c", "import app; app.create_app()"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3
        assert "rule 'cap': params.max_seconds" in done.stderr and "Traceback" not in done.stderr


class TestRunEnv:
    def test_cli_reads_what_make_run_generated_and_dotenv_wins(self, tmp_path: Path) -> None:
        """`make run` writes var/run.env; a command started in the same directory reads it, and .env (the
        operator's own) takes precedence over it."""
        (tmp_path / "var").mkdir()
        (tmp_path / "var" / "run.env").write_text("SANDBOX_SECRET=generated-secret\nSANDBOX_MEMBER_ID=from-run-env\n")
        (tmp_path / ".env").write_text("SANDBOX_MEMBER_ID=from-dotenv\n")
        code = ("from config.settings import load_settings; s = load_settings(); "
                "print(s.sandbox_secret.get_secret_value(), s.sandbox_member_id)")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.split() == ["generated-secret", "from-dotenv"], done.stderr


class TestEmptyRules:
    def test_refused_against_a_real_portal(self, tmp_path: Path) -> None:
        """A rules file with no rules would enforce nothing, silently: refused outside sandbox mode."""
        from config.settings import ConfigError
        from startup import load_configuration

        rules = tmp_path / "rules.yaml"
        rules.write_text("timezone: UTC\n")
        with pytest.raises(ConfigError, match="no rules, so nothing would be enforced"):
            load_configuration(_env_file=None, rules_file=str(rules), b24_application_token="tok-123456",
                               b24_webhook_url=f"https://x.bitrix24.com/rest/7/{SECRET}/")
        settings, ruleset = load_configuration(_env_file=None, rules_file=str(rules))  # the sandbox: allowed
        assert settings.uses_sandbox and ruleset.rules == []


class TestTokens:
    WEBHOOK = {"b24_webhook_url": f"https://x.bitrix24.com/rest/7/{SECRET}/", "b24_application_token": "tok-123456"}

    @pytest.mark.parametrize(("token", "problem"), [
        ("", "is empty"), ("   ", "is empty"), ("change-me", "is the example value"),
        ("short-token", "is shorter than 16 characters")])
    def test_weak_admin_token_refused_against_a_real_portal(self, token: str, problem: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None, taskwarden_admin_token=token, **self.WEBHOOK)
        assert str(caught.value) == f"TASKWARDEN_ADMIN_TOKEN {problem} (unset it to turn the admin API off)"

    def test_strong_admin_token_and_the_sandbox_accepted(self) -> None:
        assert load_settings(_env_file=None, taskwarden_admin_token="x" * 16, **self.WEBHOOK)
        assert load_settings(_env_file=None, taskwarden_admin_token="").uses_sandbox  # sandbox: empty means off

    def test_blank_application_token_refused(self) -> None:
        with pytest.raises(ConfigError, match="B24_APPLICATION_TOKEN is required"):
            load_settings(_env_file=None, b24_webhook_url=f"https://x.bitrix24.com/rest/7/{SECRET}/",
                          b24_application_token=" ")
