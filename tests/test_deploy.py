"""The container setup: compose services, health checks, and the commands they run exist and work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from redis import Redis

from workers.liveness import scheduler_beat
from workers.worker import build_worker

ROOT = Path(__file__).parent.parent


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def flask_commands(argv: list[str]) -> list[str]:
    return [argv[3]] if argv[:3] == ["flask", "--app", "app"] else []


class TestCompose:
    def test_services_and_health_checks(self) -> None:
        """redis (append-only, noeviction), web, two workers and a scheduler, each with a health check."""
        services = compose()["services"]
        assert set(services) == {"redis", "web", "worker", "scheduler"}
        assert all("healthcheck" in service for service in services.values())
        assert services["worker"]["deploy"]["replicas"] == 2
        assert "--appendonly" in services["redis"]["command"] and "noeviction" in services["redis"]["command"]
        assert "--maxmemory" in services["redis"]["command"]  # noeviction alone lets Redis grow until the host dies
        assert services["web"]["command"] == ["gunicorn", "-c", "config/gunicorn.py", "app:create_app()"]

    def test_refuses_to_start_without_a_portal(self) -> None:
        """Compose runs no sandbox: without B24_WEBHOOK_URL, interpolation stops `docker compose up` with a message."""
        for name in ("web", "worker", "scheduler"):
            webhook = compose()["services"][name]["environment"]["B24_WEBHOOK_URL"]
            assert webhook.startswith("${B24_WEBHOOK_URL:?") and "B24_APPLICATION_TOKEN" in webhook

    def test_web_hostname_is_fixed_for_the_spool(self) -> None:
        """Spool files are named by host: a recreated web container must keep its predecessor's name."""
        assert compose()["services"]["web"]["hostname"]

    def test_health_checks_agree_with_the_image(self) -> None:
        """The image has no HEALTHCHECK (workers serve no HTTP); compose gives each process its own."""
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert "\nHEALTHCHECK" not in dockerfile
        checks = {name: service["healthcheck"]["test"] for name, service in compose()["services"].items()}
        assert "/healthz" in " ".join(checks["web"])
        assert checks["worker"][1:] == ["flask", "--app", "app", "health", "worker"]
        assert checks["scheduler"][1:] == ["flask", "--app", "app", "health", "scheduler"]

    def test_every_command_is_a_real_cli_command(self, app: Flask) -> None:
        """Each `flask --app app X` in the compose file (commands and health checks) is registered."""
        used = set()
        for service in compose()["services"].values():
            for argv in (service.get("command", []), service.get("healthcheck", {}).get("test", [])[1:]):
                used.update(flask_commands(argv))
        assert used == {"worker", "scheduler", "health"}
        assert used <= set(app.cli.commands)

    def test_image_runs_as_non_root(self) -> None:
        """The Dockerfile builds on a slim base and switches to a numeric non-root user."""
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert "slim" in dockerfile and "\nUSER 10001\n" in dockerfile

    @pytest.mark.skipif(not shutil.which("docker"), reason="no docker client")
    def test_compose_config_validates(self) -> None:
        """`docker compose config` accepts the file where the compose plugin exists."""
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode != 0:
            pytest.skip("the docker client here has no compose plugin")
        done = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr


class TestHealthCommands:
    def test_worker(self, app: Flask, runner: Any, redis: Redis) -> None:
        """`health worker` fails with no worker on this host and passes once one has registered."""
        assert runner.invoke(args=["health", "worker"]).exit_code == 1
        worker = build_worker(app.extensions["taskwarden"])
        worker.register_birth()
        worker.heartbeat()
        try:
            result = runner.invoke(args=["health", "worker"])
            assert (result.exit_code, result.output.strip()) == (0, "worker: alive")
        finally:
            worker.register_death()

    def test_scheduler(self, app: Flask, runner: Any, redis: Redis) -> None:
        """`health scheduler` passes only after a scheduler tick on this host."""
        assert runner.invoke(args=["health", "scheduler"]).exit_code == 1
        scheduler_beat(app.extensions["taskwarden"])
        assert runner.invoke(args=["health", "scheduler"]).exit_code == 0
