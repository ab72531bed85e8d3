"""Shared fixtures: a real Redis database of the tests' own and the sandbox portal over real HTTP.
Constants and helpers that tests import live in ``tests/helpers.py``.

The tests' Redis is ``TASKWARDEN_TEST_REDIS_URL`` (default db 13 of the local server); it is flushed
before and after each test that uses it, and nothing else is touched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from redis import Redis
from werkzeug.serving import make_server

from tests.helpers import DEFAULT_RULES, TEST_ADMIN_TOKEN, TEST_APP_TOKEN, TEST_MEMBER_ID, TEST_REDIS_URL, TEST_SECRET

if TYPE_CHECKING:
    from sandbox.control import SandboxControl
    from sandbox.server import RunningSandbox

@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    """One sandbox portal for the whole run, on a free loopback port."""
    from sandbox.config import SandboxConfig
    from sandbox.server import start_in_thread

    running = start_in_thread(
        SandboxConfig(secret=TEST_SECRET, application_token=TEST_APP_TOKEN, member_id=TEST_MEMBER_ID)
    )
    yield running
    running.stop()


@pytest.fixture
def sandbox(sandbox_server: RunningSandbox) -> SandboxControl:
    """The sandbox emptied and set back to its default configuration before each test."""
    from sandbox.control import SandboxControl

    control = SandboxControl(sandbox_server.url)
    control.reset()
    return control


@pytest.fixture
def redis() -> Iterator[Redis]:
    """The tests' own Redis database, empty."""
    connection = Redis.from_url(TEST_REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def make_app(tmp_path: Path, redis: Redis, sandbox_server: RunningSandbox) -> Callable[..., Flask]:
    """Build an app against the test Redis and the sandbox; ``rules`` is YAML text, settings by name."""

    def build(rules: str = DEFAULT_RULES, **settings: Any) -> Flask:
        import metrics
        from app import create_app

        metrics.discard_pending()  # counts of an earlier test must not land in this test's database
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(rules)
        values = {"redis_url": TEST_REDIS_URL, "rules_file": str(rules_file), "sandbox_url": sandbox_server.url,
                  "sandbox_secret": TEST_SECRET, "sandbox_application_token": TEST_APP_TOKEN,
                  "taskwarden_admin_token": TEST_ADMIN_TOKEN, "b24_rate_burst": 50,
                  "spool_dir": str(tmp_path / "spool"), **settings}
        return create_app({"TESTING": True, "SETTINGS": values})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def live_app(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on a free port (so the sandbox can post events to it)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test's own on a free port, which the test may stop and start again."""
    from tests.redis_process import RedisProcess

    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
