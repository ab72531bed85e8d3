"""Redis outage loses no event: intake spools verified events to disk and queues them once Redis is back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from redis import Redis

import keys
import queueing
from handlers.spool import Spool

from .helpers import FORM, event_body, poll, run_worker
from .redis_process import RedisProcess


def post(app: Flask, task_id: int, ts: int) -> Any:
    return app.test_client().post("/bitrix24/events", data=event_body(task_id, ts=ts), content_type=FORM)


class TestOutage:
    def test_spooled_then_queued_once(self, make_app: Callable[..., Flask], own_redis: RedisProcess,
                                      tmp_path: Path) -> None:
        """Events during an outage answer 202 spooled; once Redis is back each task is queued once."""
        app = make_app(redis_url=own_redis.url)
        spool = app.extensions["taskwarden_spool"]
        own_redis.stop()
        answers = [post(app, task_id, ts) for task_id, ts in ((1, 100), (2, 101), (2, 102))]
        assert [(a.status_code, a.get_json()["status"]) for a in answers] == [(202, "spooled")] * 3
        assert app.test_client().get("/readyz").status_code == 503
        assert app.test_client().get("/healthz").status_code == 200
        lines = spool.path.read_text().splitlines()
        assert [json.loads(line)["task_id"] for line in lines] == [1, 2, 2]
        with spool.path.open("a") as handle:  # a write cut short by a crash
            handle.write('{"event_name": "ONTASKUPD\n')

        own_redis.start()
        redis = Redis.from_url(own_redis.url)
        queue_key = f"rq:queue:{queueing.EVALUATION_QUEUE}"
        poll(lambda: not spool.pending_files(), "the spool to drain", timeout=15)
        assert redis.llen(queue_key) == 2  # tasks 1 and 2; the second event for 2 coalesced
        rejected = list(spool.directory.glob("rejected-*.jsonl"))
        assert len(rejected) == 1 and "ONTASKUPD" in rejected[0].read_text()

        again = spool.drain(redis, lambda record: "queued")
        assert (again.queued, redis.llen(queue_key)) == (0, 2)
        assert post(app, 3, 103).get_json()["status"] == "queued"

    def test_interrupted_drain_does_not_queue_twice(self, make_app: Callable[..., Flask], redis: Redis,
                                                     tmp_path: Path) -> None:
        """A drain that stopped midway and runs again skips the lines it already queued."""
        app = make_app()
        spool = app.extensions["taskwarden_spool"]
        for task_id in (11, 12, 13):
            spool.append({"event_name": "ONTASKUPDATE", "task_id": task_id, "event_id": f"e{task_id}"})
        seen: list[int] = []

        def flaky(record: dict[str, Any]) -> str:
            if record["task_id"] == 13 and 13 not in seen:
                seen.append(13)
                from redis.exceptions import ConnectionError as RedisConnectionError

                raise RedisConnectionError("gone again")
            seen.append(record["task_id"])
            return "queued"

        first = spool.drain(redis, flaky)
        assert (first.complete, first.queued) == (False, 2)
        second = spool.drain(redis, flaky)
        assert (second.complete, second.queued, second.already_done) == (True, 1, 2)
        assert seen == [11, 12, 13, 13] and not spool.pending_files()

    def test_orphaned_file_adopted_at_start(self, make_app: Callable[..., Flask], redis: Redis,
                                            tmp_path: Path) -> None:
        """A spool file left by a dead process is drained by the next web process, once it serves; an app built
        only to run a command leaves it alone."""
        import socket

        spool_dir = tmp_path / "spool"
        spool_dir.mkdir()
        host = socket.gethostname().replace(".", "_")
        orphan = spool_dir / f"events-{host}-999999.jsonl"
        orphan.write_text(json.dumps({"event_name": "ONTASKADD", "task_id": 77, "event_id": "x"}) + "\n")
        app = make_app()
        assert app.test_cli_runner().invoke(args=["status"]).exit_code == 0
        assert orphan.exists() and app.extensions["taskwarden"].queue().count == 0
        assert app.test_client().get("/healthz").status_code == 200
        poll(lambda: not orphan.exists() and not app.extensions["taskwarden_spool"].pending_files(),
             "the orphaned spool file to be drained", timeout=15)
        assert [job.kwargs["task_id"] for job in app.extensions["taskwarden"].queue().jobs] == [77]

    def test_stale_file_of_another_host_adopted(self, make_app: Callable[..., Flask], redis: Redis,
                                                tmp_path: Path) -> None:
        """A recreated container has a new host name: stale files of other hosts are adopted, fresh ones not."""
        import os
        import time

        spool_dir = tmp_path / "spool"
        spool_dir.mkdir()
        stale = spool_dir / "events-old_container-7.jsonl"
        fresh = spool_dir / "events-live_container-8.jsonl"
        for path, task_id in ((stale, 81), (fresh, 82)):
            path.write_text(json.dumps({"event_name": "ONTASKUPDATE", "task_id": task_id, "event_id": "x"}) + "\n")
        old = time.time() - 600
        os.utime(stale, (old, old))
        app = make_app()
        assert app.test_client().get("/healthz").status_code == 200
        poll(lambda: not stale.exists() and not app.extensions["taskwarden_spool"].pending_files(),
             "the stale file to be adopted", timeout=15)
        assert fresh.exists()
        assert [job.kwargs["task_id"] for job in app.extensions["taskwarden"].queue().jobs] == [81]

    def test_file_gone_while_listing(self, tmp_path: Path) -> None:
        """A spool file removed between listing and reading its age (the drainer finished it) is skipped."""
        import os
        import socket

        spool_dir = tmp_path / "spool"
        spool_dir.mkdir()
        host = socket.gethostname().replace(".", "_")
        # listed by name, gone when looked at: what a file the drainer just removed looks like
        (spool_dir / f"events-{host}-{os.getpid()}.jsonl").symlink_to(spool_dir / "removed")
        kept = spool_dir / f"events-{host}-{os.getpid()}.jsonl.draining-1"
        kept.write_text("")
        assert Spool(str(spool_dir), lambda digest: digest).pending_files() == [kept]


class TestQueueBound:
    def test_events_beyond_the_cap_wait_on_disk_and_are_queued_later(self, make_app: Callable[..., Flask],
                                                                     redis: Redis, sandbox: Any) -> None:
        """At TASKWARDEN_MAX_WAITING tasks waiting, Redis takes no more: a new task's event is spooled (202,
        queue_full) and queued once the workers made room; an event for a waiting task is still a duplicate."""
        app = make_app(taskwarden_max_waiting=3)
        rt = app.extensions["taskwarden"]
        client = app.test_client()
        task_ids = [sandbox.add_task(TITLE=f"t{i}") for i in range(5)]
        answers = [client.post("/bitrix24/events", data=event_body(t), content_type=FORM).get_json()
                   for t in task_ids]
        assert [a["status"] for a in answers] == ["queued"] * 3 + ["spooled"] * 2
        assert {a.get("reason") for a in answers[3:]} == {"queue_full"}
        assert client.post("/bitrix24/events", data=event_body(task_ids[0], ts=5),
                           content_type=FORM).get_json()["status"] == "duplicate"
        assert redis.hlen(keys.waiting(rt.portal.id)) == 3
        run_worker(app)  # the three are evaluated: room again
        poll(lambda: {int(t) for t in redis.hkeys(keys.waiting(rt.portal.id))} == set(task_ids[3:]),
             "the spooled events to be queued")
        run_worker(app)
        assert redis.hlen(keys.waiting(rt.portal.id)) == 0
        assert not app.extensions["taskwarden_spool"].pending_files()
