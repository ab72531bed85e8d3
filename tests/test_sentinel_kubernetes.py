"""The Kubernetes example in deploy/kubernetes/: every file parses, each process runs the image's command with
its health check, the worker scaler watches the evaluation queue's list, and the example configuration is one
the service accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis
from rq import Queue

import queueing
from config.settings import Settings, load_settings
from policies import load_policy_rules

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
FLASK = ["flask", "--app", "app"]
COMMANDS = {"web": ["gunicorn", "-c", "config/gunicorn.py", "app:create_app()"], "worker": [*FLASK, "worker"],
            "scheduler": [*FLASK, "scheduler"]}


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), path
            assert {"apiVersion", "kind", "metadata"} <= document.keys(), path
            found.append(document)
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}"
    return matches[0]


def container(deployment: str) -> dict[str, Any]:
    containers = one("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_every_file_parses() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == sorted(["ConfigMap", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "Deployment",
                            "ScaledObject", "Deployment"])


@pytest.mark.parametrize("process", ["web", "worker", "scheduler"])
def test_each_process_runs_the_image_command_with_its_configuration(process: str) -> None:
    spec = container(f"taskwarden-{process}")
    assert spec["command"] == COMMANDS[process]
    sources = [next(iter(source.values()))["name"] for source in spec["envFrom"]]
    assert sources == ["taskwarden-env", "taskwarden-secrets"]
    rules_dir = str(Path(one("ConfigMap", "taskwarden-env")["data"]["RULES_FILE"]).parent)
    assert {"name": "rules", "mountPath": rules_dir, "readOnly": True} in spec["volumeMounts"]


def test_the_web_command_is_the_images_default() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "config/gunicorn.py", "app:create_app()"]' in dockerfile


def test_health_checks() -> None:
    """/healthz for the web process (readiness too: intake takes events without Redis); the health command
    for the others."""
    web = container("taskwarden-web")
    for probe in ("readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8000} in web["ports"]
    for process in ("worker", "scheduler"):
        assert container(f"taskwarden-{process}")["livenessProbe"]["exec"]["command"] == [*FLASK, "health", process]


def test_the_service_reaches_the_web_pods() -> None:
    service = one("Service", "taskwarden-web")["spec"]
    labels = one("Deployment", "taskwarden-web")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    spool = one("PersistentVolumeClaim", "taskwarden-spool")["spec"]
    assert spool["accessModes"] == ["ReadWriteMany"]


def test_workers_scale_on_the_evaluation_queue() -> None:
    """KEDA's redis-sentinel list scaler on RQ's list of the evaluation queue, reading the Sentinels and the
    passwords from the variables the worker itself uses."""
    scaled = one("ScaledObject", "taskwarden-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "taskwarden-worker"
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "redis-sentinel"
    metadata = trigger["metadata"]
    key = Queue(queueing.EVALUATION_QUEUE, connection=Redis()).key  # RQ's own name for the list; no connection
    assert metadata["listName"] == key == "rq:queue:taskwarden-evaluations"
    assert int(metadata["listLength"]) > 0
    env = one("ConfigMap", "taskwarden-env")["data"]
    assert metadata["databaseIndex"] == env["REDIS_DB"]
    for name in ("addressesFromEnv", "sentinelMasterFromEnv", "passwordFromEnv", "sentinelPasswordFromEnv"):
        assert metadata[name].lower() in Settings.model_fields, name


def test_the_example_configuration_is_accepted() -> None:
    """taskwarden-env with the secrets filled in passes the service's own checks, and the rules load."""
    env = one("ConfigMap", "taskwarden-env")["data"]
    secrets = {"b24_webhook_url": "https://example.bitrix24.com/rest/1/webhook-code-0123456789/",
               "b24_application_token": "application-token", "taskwarden_admin_token": "admin-token-0123456789abcdef",
               "redis_password": "p", "redis_sentinel_password": "s"}
    settings = load_settings(_env_file=None, **{k.lower(): v for k, v in env.items()}, **secrets)
    assert settings.sentinel_addresses and settings.taskwarden_redis_min_replicas == 1
    assert Path(env["RULES_FILE"]).name in one("ConfigMap", "taskwarden-rules")["data"]


def test_the_example_rules_load(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(one("ConfigMap", "taskwarden-rules")["data"]["rules.yaml"])
    assert [rule.name for rule in load_policy_rules(rules).rules] == ["cap-time-entries"]
