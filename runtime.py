"""The process-wide pieces every process shares: settings, rules, the portal, Redis, the REST client.

In application mode there is no one portal: ``for_portal(member_id)`` gives the view of one installed portal
(its record from the registry, its own rules file if ``RULES_DIR`` has one, a REST client with its tokens),
and everything downstream, which reads ``rt.portal``, ``rt.rules`` and ``rt.client``, works on that portal.

Built by ``create_app`` for the app and its CLI commands. The worker command installs it here (``install``)
so that RQ jobs, which receive only JSON-serialisable ids, can find it. Nothing connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

import queueing
from bitrix.client import Client, TokenSource
from config.portal import Portal, portal_from_settings
from config.rules import RuleSet
from config.settings import Settings
from policies import load_policy_rules
from portals import registry
from portals.crypto import Box, box_from_settings
from portals.tokens import PortalInactive, PortalTokens


@dataclass
class Runtime:
    settings: Settings
    rules: RuleSet
    portal: Portal
    redis: Redis = field(repr=False)
    _queues: dict[str, Queue] = field(default_factory=dict, repr=False)
    tokens: TokenSource | None = field(default=None, repr=False)
    """An installed portal's OAuth tokens (application mode); a webhook carries its secret in its URL."""

    @cached_property
    def client(self) -> Client:
        return Client(self.portal, self.redis, tokens=self.tokens)

    def queue(self, name: str = queueing.EVALUATION_QUEUE) -> Queue:
        """The RQ queue, built once per process (intake asks for it on every event)."""
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    @cached_property
    def box(self) -> Box:
        """Seals and opens the portals' tokens (application mode)."""
        return box_from_settings(self.settings)

    def portal_by_id(self, portal_id: str) -> Portal:
        """The portal of a job. Webhook mode has one, from the environment; application mode reads the
        registry, and a portal that is not active raises ``PortalInactive`` (its jobs stop)."""
        if not self.settings.app_mode:
            if portal_id != self.portal.id:
                raise LookupError(f"unknown portal {portal_id!r}")
            return self.portal
        record = registry.load(self.redis, self.box, portal_id)
        if record is None or record.status != registry.ACTIVE:
            raise PortalInactive("portal", "PORTAL_INACTIVE",
                                 f"portal {portal_id} is {record.status if record else 'not installed'}")
        return app_portal(self.settings, record)

    def for_portal(self, portal_id: str) -> Runtime:
        """This runtime seen from one portal: itself in webhook mode, a view of an installed portal in
        application mode (raises ``PortalInactive`` for one that is uninstalled or needs reinstalling)."""
        portal = self.portal_by_id(portal_id)
        if not self.settings.app_mode:
            return self
        view = Runtime(settings=self.settings, rules=rules_for(self.settings, self.rules, portal_id), portal=portal,
                       redis=self.redis, _queues=self._queues,
                       tokens=PortalTokens(self.redis, self.box, self.settings, portal_id))
        view.box = self.box
        return view

    def portal_ids(self, only: str | None = None) -> list[str]:
        """``only``, or every portal whose records one may read: the one portal of webhook mode; every portal
        ever installed in application mode (an uninstalled one's audit stays readable unless it was cleaned)."""
        if only:
            return [only]
        return registry.member_ids(self.redis) if self.settings.app_mode else [self.portal.id]

    def active_portals(self) -> list[Runtime]:
        """Every portal this process serves, each as its own view: the one portal in webhook mode, the
        active installed ones in application mode."""
        if not self.settings.app_mode:
            return [self]
        views = []
        for member_id in registry.member_ids(self.redis):
            try:
                views.append(self.for_portal(member_id))
            except PortalInactive:
                continue
        return views


def app_portal(settings: Settings, record: registry.PortalRecord) -> Portal:
    """An installed portal as the REST client sees it: its endpoint, and the shared budget settings."""
    return Portal(id=record.member_id, rest_base=record.client_endpoint, user_id=0, secret="",
                  application_token=record.application_token, member_id=record.member_id,
                  rate=settings.b24_rate_limit, burst=settings.b24_rate_burst,
                  operating_limit=settings.b24_operating_limit, kind="app")


_portal_rules: dict[str, tuple[float, RuleSet]] = {}


def rules_for(settings: Settings, default: RuleSet, member_id: str) -> RuleSet:
    """``RULES_DIR/<member_id>.yaml`` when it exists (read again when it changes), else ``RULES_FILE``'s."""
    if not settings.rules_dir:
        return default
    path = Path(settings.rules_dir) / f"{member_id}.yaml"
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return default
    cached = _portal_rules.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = _portal_rules[str(path)] = (mtime, load_policy_rules(path))
    return cached[1]


def build_runtime(settings: Settings, rules: RuleSet) -> Runtime:
    """Describe the portal and make the Redis client (it connects on first use)."""
    from redis_connect import connect

    redis = connect(settings)  # one server (REDIS_URL), or the master the Sentinels name
    portal = APP_PLACEHOLDER if settings.app_mode else portal_from_settings(settings)
    return Runtime(settings=settings, rules=rules, portal=portal, redis=redis)


APP_PLACEHOLDER = Portal(id="app", rest_base="https://app.invalid/rest/", user_id=0, secret="", application_token="",
                         kind="app")
"""The runtime's own portal in application mode: none. Work on a portal goes through ``for_portal``."""


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    """The runtime of this process; jobs call this."""
    if _current is None:
        raise RuntimeError("no runtime installed: start workers with `flask --app app worker`")
    return _current
