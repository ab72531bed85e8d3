"""The Redis variables: one server or Sentinel, each combination that cannot work refused in one line naming
the variable, and no password ever repeated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis.sentinel import SentinelConnectionPool

from config.settings import ConfigError, load_settings
from redis_connect import MasterConnection, connect, describe, replicas_to_wait_for

ROOT = Path(__file__).parent.parent
PASSWORD = "hunter2-redis-password"
SENTINEL_PASSWORD = "hunter3-sentinel-password"
SENTINELS = {"redis_sentinels": "s1:26379,s2:26379,[::1]:26380", "redis_sentinel_master": "taskwarden"}


@pytest.mark.parametrize(("values", "message"), [
    ({"redis_sentinels": "s1:26379"}, "REDIS_SENTINEL_MASTER is required when REDIS_SENTINELS is set"),
    ({"redis_sentinel_master": "taskwarden"}, "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not"),
    ({"redis_sentinel_password": SENTINEL_PASSWORD}, "REDIS_SENTINEL_PASSWORD applies only with REDIS_SENTINELS"),
    ({**SENTINELS, "redis_url": "redis://r:6379/0"},
     "set REDIS_URL (one server) or REDIS_SENTINELS (Sentinel), not both; with Sentinel the database is REDIS_DB"),
    ({"redis_db": 3}, "REDIS_DB applies only with REDIS_SENTINELS; with one server the database is REDIS_URL's path"),
    ({**SENTINELS, "redis_sentinels": "s1:26379,s2"},
     "REDIS_SENTINELS: entry 2 is not host:port (expected e.g. sentinel-1:26379,sentinel-2:26379)"),
    ({**SENTINELS, "redis_sentinels": f"redis://:{PASSWORD}@s1:26379"},
     "REDIS_SENTINELS: entry 1 is not host:port (expected e.g. sentinel-1:26379,sentinel-2:26379)"),
    ({**SENTINELS, "redis_sentinels": "s1:99999"},
     "REDIS_SENTINELS: entry 1 is not host:port (expected e.g. sentinel-1:26379,sentinel-2:26379)"),
    ({**SENTINELS, "redis_sentinel_master": "two names"},
     "REDIS_SENTINEL_MASTER: must be one name, as in the Sentinels' `sentinel monitor <name> ...`"),
    ({**SENTINELS, "redis_db": -1}, "REDIS_DB: Input should be greater than or equal to 0"),
    ({"taskwarden_redis_min_replicas": -1}, "TASKWARDEN_REDIS_MIN_REPLICAS: Input should be greater than or equal to 0"),
])
def test_unusable_combinations_are_one_line(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, redis_password=PASSWORD, **values)
    assert str(caught.value) == message
    assert PASSWORD not in str(caught.value) and SENTINEL_PASSWORD not in str(caught.value)


def test_sentinel_settings_build_a_sentinel_client() -> None:
    """Nothing connects: the client is redis-py's Sentinel-managed one, with the db and passwords given."""
    settings = load_settings(_env_file=None, **SENTINELS, redis_db=4, redis_password=PASSWORD,
                             redis_sentinel_password=SENTINEL_PASSWORD, taskwarden_redis_min_replicas=1)
    assert settings.sentinel_addresses == [("s1", 26379), ("s2", 26379), ("::1", 26380)]
    client = connect(settings)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.connection_class is MasterConnection
    assert (pool.service_name, pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (
        "taskwarden", 4, PASSWORD)
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == SENTINEL_PASSWORD
    assert replicas_to_wait_for(client) == 1
    assert describe(settings) == "redis+sentinel://s1:26379,s2:26379,[::1]:26380/taskwarden/4"
    assert PASSWORD not in repr(settings) and SENTINEL_PASSWORD not in repr(settings)


def test_one_server_keeps_redis_url() -> None:
    """Without Sentinel, REDIS_URL as before; REDIS_PASSWORD fills in a URL without one; describe() drops a
    URL's password."""
    settings = load_settings(_env_file=None, redis_url="redis://r.internal:6380/5", redis_password=PASSWORD)
    pool = connect(settings).connection_pool
    assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"], pool.connection_kwargs["db"],
            pool.connection_kwargs["password"]) == ("r.internal", 6380, 5, PASSWORD)
    assert replicas_to_wait_for(connect(settings)) == 0
    with_password = load_settings(_env_file=None, redis_url=f"redis://:{PASSWORD}@r.internal:6380/5")
    assert describe(with_password) == "redis://r.internal:6380/5"


def test_a_process_stops_with_one_line(tmp_path: Path) -> None:
    """Started with sentinels and no master name, a process exits 3 with one line and no traceback."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT), "REDIS_SENTINELS": "s1:26379",
           "REDIS_PASSWORD": PASSWORD}
    done = subprocess.run([sys.executable, "-c", "import app; app.create_app()"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip() == ("taskwarden: configuration error: REDIS_SENTINEL_MASTER is required when "
                                   "REDIS_SENTINELS is set")
    assert PASSWORD not in done.stderr + done.stdout
