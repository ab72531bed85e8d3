"""A Redis Sentinel topology on loopback (a master, a replica, three Sentinels), and what a client built by
``redis_connect`` does across a failover of it.

``SentinelTopology`` starts real ``redis-server`` processes of the test's own on free ports (the Sentinels as
``redis-server <config> --sentinel``, each with its config file in the test's directory), with short
``down-after-milliseconds`` and ``failover-timeout`` so that a failover takes seconds. The failover tests
(``tests/test_sentinel_failover.py``) and ``bench/failover.py`` use it too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.sentinel import Sentinel, SentinelConnectionPool
from rq import Queue
from rq.serializers import JSONSerializer

import keys
import queueing
from config.settings import load_settings
from handlers.coalesce import NotReplicated, coalesce
from redis_connect import connect
from scripts.ensure_redis import server_binary

from .helpers import poll

MASTER_NAME = "taskwarden"
DOWN_AFTER_MS = 1000
"""How long a master may not answer before a Sentinel calls it down: short, so that tests take seconds."""
FAILOVER_TIMEOUT_MS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SentinelTopology:
    """A master, a replica and ``sentinel_count`` Sentinels, each a process of our own on 127.0.0.1.

    With ``password`` the servers require it (and the replica and the Sentinels use it); with
    ``sentinel_password`` the Sentinels require theirs.
    """

    def __init__(self, directory: Path, *, sentinel_count: int = 3, password: str | None = None,
                 sentinel_password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.sentinel_password = sentinel_password
        self.server_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(sentinel_count)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    # -- starting and stopping ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the master, then its replica, then the Sentinels; return once every Sentinel sees the replica
        and the other Sentinels (before that, a failover could not be agreed on)."""
        master, replica = self.server_ports
        self._start_server(master)
        self._start_server(replica, replica_of=master)
        poll(lambda: self.replication_info(replica).get("master_link_status") == "up", "the replica to sync", 20)
        for port in self.sentinel_ports:
            self._start_sentinel(port, master)
        others = len(self.sentinel_ports) - 1
        poll(lambda: all(self._sees_everyone(port, others) for port in self.sentinel_ports),
             "every Sentinel to see the replica and the other Sentinels", 30, interval=0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def _start_server(self, port: int, replica_of: int | None = None) -> None:
        directory = self.directory / f"redis-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        args = [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--logfile", str(directory / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.processes[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll(lambda: self._answers(port), f"redis-server on port {port} to answer", 10)

    def _start_sentinel(self, port: int, master: int) -> None:
        directory = self.directory / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}", f"logfile {directory / 'sentinel.log'}",
                 f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2",
                 f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {MASTER_NAME} 1"]
        if self.password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        config = directory / "sentinel.conf"  # Sentinel rewrites it with what it learns: a file of its own
        config.write_text("\n".join(lines) + "\n")
        self.processes[port] = subprocess.Popen([server_binary(), str(config), "--sentinel"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll(lambda: self._answers(port, sentinel=True), f"Sentinel on port {port} to answer", 10)

    # -- what the service is given ---------------------------------------------------------------------

    def env(self, db: int = 9) -> dict[str, str]:
        """The environment variables of a process that uses this topology. The db is the one the tests may use
        on the machine's own Redis too, should a client ever reach that server instead."""
        values = {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
                  "REDIS_SENTINEL_MASTER": MASTER_NAME, "REDIS_DB": str(db)}
        if self.password:
            values["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            values["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return values

    def settings(self, **overrides: Any) -> Any:
        """Settings for this topology, as a process given ``env()`` reads them."""
        values: dict[str, Any] = {name.lower(): value for name, value in self.env().items()}
        return load_settings(_env_file=None, **(values | overrides))

    # -- watching and breaking it ----------------------------------------------------------------------

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                address: Any = self.sentinel(port).sentinel_get_master_addr_by_name(MASTER_NAME)
            except RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def server(self, port: int, db: int = 9) -> Redis:
        """A plain client of one server of the topology (db: the one ``env`` gives the service)."""
        return Redis(host="127.0.0.1", port=port, db=db, password=self.password, socket_connect_timeout=1,
                     socket_timeout=5)

    def kill(self, port: int) -> None:
        """SIGKILL one server: no shutdown, no last writes, as a crashed host."""
        process = self.processes[port]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def wait_for_new_master(self, old: int, timeout: float = 60) -> int:
        """Poll until every Sentinel names another master than ``old`` and that server says it is master."""
        def promoted() -> int | None:
            named = {self._named_by(port) for port in self.sentinel_ports}
            if len(named) != 1 or None in named or old in named:
                return None
            port = named.pop()
            return port if port is not None and self.replication_info(port).get("role") == "master" else None
        return int(poll(promoted, "the Sentinels to promote the replica", timeout, interval=0.05))

    def _named_by(self, sentinel_port: int) -> int | None:
        try:
            address: Any = self.sentinel(sentinel_port).sentinel_get_master_addr_by_name(MASTER_NAME)
        except RedisError:
            return None
        return int(address[1]) if address else None

    def _sees_everyone(self, sentinel_port: int, others: int) -> bool:
        try:
            state: Any = self.sentinel(sentinel_port).sentinel_master(MASTER_NAME)
        except RedisError:
            return False
        return bool(state["num-slaves"] >= 1 and state["num-other-sentinels"] >= others)

    def sentinel(self, port: int) -> Redis:
        """A plain client of one Sentinel."""
        return Redis(host="127.0.0.1", port=port, password=self.sentinel_password, socket_connect_timeout=1,
                     socket_timeout=2, decode_responses=True)

    def _answers(self, port: int, sentinel: bool = False) -> bool:
        client = self.sentinel(port) if sentinel else self.server(port)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()

    def replication_info(self, port: int) -> dict[str, Any]:
        """``INFO replication`` of one server; empty when it does not answer."""
        try:
            return dict(self.server(port).info("replication"))
        except RedisError:
            return {}


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    running = SentinelTopology(tmp_path / "topology", password="redis-pass-for-tests",
                               sentinel_password="sentinel-pass-for-tests")
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _controlled_failover(topology: SentinelTopology) -> tuple[int, int]:
    """``SENTINEL FAILOVER``: the replica is promoted and the old master, still running, becomes its replica."""
    old = topology.master_port()
    assert old is not None
    topology.sentinel(topology.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    new = topology.wait_for_new_master(old)
    poll(lambda: topology.replication_info(old).get("role") == "slave", "the old master to become a replica", 30)
    return old, new


def _server_port(connection: Any) -> int:
    """The port of the server a connection talks to, as that server reports it."""
    connection.send_command("CLIENT", "INFO")
    info = connection.read_response()
    laddr = next(part for part in (info.decode() if isinstance(info, bytes) else info).split() if part.startswith("laddr="))
    return int(laddr.rsplit(":", 1)[1])


def test_settings_and_client(topology: SentinelTopology) -> None:
    """REDIS_SENTINELS gives every process redis-py's Sentinel-managed client; describe() names the master
    without a password."""
    from redis_connect import MasterConnection, describe

    settings = topology.settings()
    client = connect(settings)
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.connection_class is MasterConnection
    assert client.set("k", 1) and topology.server(topology.master_port() or 0).get("k") == b"1"
    text = describe(settings)
    assert text.endswith(f"/{MASTER_NAME}/9")
    assert topology.password and topology.password not in text
    assert topology.sentinel_password and topology.sentinel_password not in text


def test_connections_made_outside_the_pool_reach_the_master(topology: SentinelTopology) -> None:
    """redis-py 8.1's own Sentinel-managed connection asks the Sentinels only in ``connect()``: sent a command
    unconnected, it goes to its default address (redis/redis-py#3874). Ours asks on every connect, and intake's
    kept connections are connected with ``connect()`` anyway, so both reach the master."""
    master = topology.master_port()
    client = connect(topology.settings())
    pool = client.connection_pool
    ours = pool.connection_class(**pool.connection_kwargs)
    assert _server_port(ours) == master  # no connect() first: the way a retry reconnects
    ours.disconnect()

    stock = topology_sentinels(topology).master_for(MASTER_NAME, db=9, password=topology.password)
    assert coalesce(stock, queueing_queue(stock), "p", 7, event_name="ONTASKUPDATE", event_id="e7") == "queued"
    assert topology.server(master or 0).exists(keys.pending("p", 7))


@pytest.mark.slow
def test_a_client_follows_the_master_through_a_failover(topology: SentinelTopology) -> None:
    """After a failover in which the old master stays up as a replica, the client's pool, intake's kept
    script connections and a connection that reconnects on its own all reach the new master."""
    client = connect(topology.settings())
    queue = queueing_queue(client)
    assert coalesce(client, queue, "p", 1, event_name="ONTASKUPDATE", event_id="e1") == "queued"
    pool = client.connection_pool
    loose = pool.connection_class(**pool.connection_kwargs)
    old = _server_port(loose)
    demoted, new = _controlled_failover(topology)
    assert demoted == old

    assert coalesce(client, queue, "p", 2, event_name="ONTASKUPDATE", event_id="e2") == "queued"
    for _ in range(3):  # a pooled connection the old master dropped may fail once, as after a restart
        try:
            client.set("after", 1)
            break
        except RedisConnectionError:
            continue
    loose.disconnect()
    assert _server_port(loose) == new
    master = topology.server(new)
    assert master.get("after") == b"1"
    assert master.exists(keys.pending("p", 1)) and master.exists(keys.pending("p", 2))
    assert master.llen(f"rq:queue:{queueing.EVALUATION_QUEUE}") == 2


@pytest.mark.slow
def test_min_replicas_refuses_an_unreplicated_event_once(topology: SentinelTopology) -> None:
    """With TASKWARDEN_REDIS_MIN_REPLICAS=1, an event reaches the replica before coalesce answers; with the
    replica gone, the event is queued but ``NotReplicated`` says so (intake spools it), once: the same event
    back from the spool is accepted."""
    client = connect(topology.settings(taskwarden_redis_min_replicas=1))
    queue = queueing_queue(client)
    master_port = topology.master_port()
    assert master_port is not None
    replica_port = next(port for port in topology.server_ports if port != master_port)
    assert coalesce(client, queue, "p", 1, event_name="ONTASKUPDATE", event_id="e1") == "queued"
    assert topology.server(replica_port).exists(keys.pending("p", 1))  # WAIT returned: the replica has it
    topology.kill(replica_port)
    with pytest.raises(NotReplicated):
        coalesce(client, queue, "p", 2, event_name="ONTASKUPDATE", event_id="e2")
    assert topology.server(master_port).exists(keys.pending("p", 2))  # queued all the same
    assert coalesce(client, queue, "p", 2, event_name="ONTASKUPDATE", event_id="e2") == "duplicate"
    topology.server(master_port).delete(keys.pending("p", 2))  # as if its evaluation had started meanwhile
    assert coalesce(client, queue, "p", 2, event_name="ONTASKUPDATE", event_id="e2") == "queued"  # the drain's


@pytest.mark.slow
def test_spool_drains_in_two_attempts_without_a_replica(topology: SentinelTopology, tmp_path: Path) -> None:
    """Events spooled while there was no master, drained by a master that has lost its replica: each line
    is refused once (queued, but on no replica) and the drain goes on with the next, so the file is kept
    after the first attempt and drained whole by the second, however many lines it holds."""
    from handlers.spool import Spool

    client = connect(topology.settings(taskwarden_redis_min_replicas=1))
    queue = queueing_queue(client)
    master_port = topology.master_port()
    assert master_port is not None
    topology.kill(next(port for port in topology.server_ports if port != master_port))
    spool = Spool(tmp_path / "spool", marks_key=lambda digest: f"test:spool-mark:{digest}")
    tasks = list(range(101, 111))
    for task in tasks:
        spool.append({"event_name": "ONTASKUPDATE", "task_id": task, "event_id": f"spooled-{task}"})

    def handle(record: dict[str, Any]) -> str:
        return coalesce(client, queue, "p", record["task_id"], event_name=record["event_name"],
                        event_id=record["event_id"])

    first = spool.drain(client, handle)
    assert (first.complete, first.unreplicated, first.queued) == (False, len(tasks), 0)
    assert len(spool.pending_files()) == 1
    master = topology.server(master_port)
    assert all(master.exists(keys.pending("p", task)) for task in tasks)  # queued all the same
    second = spool.drain(client, handle)
    assert (second.complete, second.duplicate, second.unreplicated) == (True, len(tasks), 0)
    assert spool.pending_files() == []


def topology_sentinels(topology: SentinelTopology) -> Sentinel:
    """redis-py's own Sentinel client of the topology, without anything of ours."""
    return Sentinel([("127.0.0.1", port) for port in topology.sentinel_ports],
                    sentinel_kwargs={"password": topology.sentinel_password, "socket_timeout": 1})


def queueing_queue(client: Redis) -> Queue:
    return Queue(queueing.EVALUATION_QUEUE, connection=client, serializer=JSONSerializer)


def test_dashboard_reads_through_the_sentinels(topology: SentinelTopology, tmp_path: Path) -> None:
    """/rq shows the master's queues through the process's own client, names the Sentinels and not a
    password, and never connects to a URL of its own."""
    from app import create_app
    from queueing import enqueue_evaluation

    from .helpers import DEFAULT_RULES, TEST_ADMIN_TOKEN

    (tmp_path / "rules.yaml").write_text(DEFAULT_RULES)
    values = {name.lower(): value for name, value in topology.env().items()}
    app = create_app({"TESTING": True, "SETTINGS": {**values, "rules_file": str(tmp_path / "rules.yaml"),
                                                    "taskwarden_admin_token": TEST_ADMIN_TOKEN,
                                                    "spool_dir": str(tmp_path / "spool")}})
    rt = app.extensions["taskwarden"]
    job = enqueue_evaluation(rt.queue(), rt.portal.id, 5)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    page = client.get("/rq/", headers=bearer)
    assert page.status_code == 200
    assert b"redis+sentinel://127.0.0.1:" in page.data
    assert topology.password and topology.password.encode() not in page.data
    jobs = client.get("/rq/0/data/jobs/taskwarden-evaluations/queued/50/asc/1.json", headers=bearer).get_json()
    assert [found["id"] for found in jobs["jobs"]] == [job.id]
    assert app.redis_conn is rt.redis  # type: ignore[attr-defined]
