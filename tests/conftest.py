"""Shared fixtures: a real Redis database of the tests' own and the sandbox portal over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox, start_in_thread

TEST_SECRET = "s3cr3t-webhook-code-for-tests"
TEST_APP_TOKEN = "app-token-for-tests-0123456789"
TEST_MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    """One sandbox portal for the whole run, on a free loopback port."""
    running = start_in_thread(
        SandboxConfig(secret=TEST_SECRET, application_token=TEST_APP_TOKEN, member_id=TEST_MEMBER_ID)
    )
    yield running
    running.stop()


@pytest.fixture
def sandbox(sandbox_server: RunningSandbox) -> SandboxControl:
    """The sandbox emptied and set back to its default configuration before each test."""
    control = SandboxControl(sandbox_server.url)
    control.reset()
    return control
