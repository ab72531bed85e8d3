"""The process-wide pieces every process shares: settings, rules, the portal, Redis, the REST client.

Built by ``create_app`` for the app and its CLI commands. The worker command installs it here (``install``)
so that RQ jobs, which receive only JSON-serialisable ids, can find it. Nothing connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

import queueing
from bitrix.client import Client
from config.portal import Portal, portal_from_settings
from config.rules import RuleSet
from config.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    rules: RuleSet
    portal: Portal
    redis: Redis = field(repr=False)
    _queues: dict[str, Queue] = field(default_factory=dict, repr=False)

    @cached_property
    def client(self) -> Client:
        return Client(self.portal, self.redis)

    def queue(self, name: str = queueing.EVALUATION_QUEUE) -> Queue:
        """The RQ queue, built once per process (intake asks for it on every event)."""
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    def portal_by_id(self, portal_id: str) -> Portal:
        """Today one portal comes from the environment; jobs still name theirs explicitly."""
        if portal_id != self.portal.id:
            raise LookupError(f"unknown portal {portal_id!r}")
        return self.portal


def build_runtime(settings: Settings, rules: RuleSet) -> Runtime:
    """Describe the portal and make the Redis client (it connects on first use)."""
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10,
                           health_check_interval=30)
    return Runtime(settings=settings, rules=rules, portal=portal_from_settings(settings), redis=redis)


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    """The runtime of this process; jobs call this."""
    if _current is None:
        raise RuntimeError("no runtime installed: start workers with `flask --app app worker`")
    return _current
