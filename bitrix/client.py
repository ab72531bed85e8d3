"""The Bitrix24 client: budget, send, decode, retry — for single calls and batches.

One ``Client`` per process and portal. Every HTTP request first takes one token from the shared
budget (a batch of 50 commands costs one), and every answer is decoded into data or a typed error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis import Redis

import metrics
from bitrix.batch import BatchResult, Command, batch_params, chunks, parse_batch
from bitrix.decode import Answer, decode_response
from bitrix.errors import BitrixError, OperationTimeLimit, QueryLimitExceeded, ServerError, TransportError
from bitrix.operating import OperatingBudget
from bitrix.rate_limit import RequestBudget
from bitrix.retry import backoff_seconds, should_retry
from bitrix.transport import Transport
from config.portal import Portal

log = structlog.get_logger(__name__)


class TokenSource(Protocol):
    """An installed application's access tokens (``portals.tokens.PortalTokens``)."""

    def access_token(self) -> str: ...

    def refresh(self, stale: str) -> str: ...


@dataclass
class ClientStats:
    """What this client spent: HTTP requests sent and seconds waited for the budget or backoff."""

    requests: int = 0
    budget_wait_seconds: float = 0.0
    retries: int = 0


class Client:
    """Calls one portal's REST API through its inbound webhook."""

    def __init__(self, portal: Portal, redis: Redis, transport: Transport | None = None,
                 sleep: Callable[[float], None] = time.sleep, tokens: TokenSource | None = None) -> None:
        self.portal = portal
        self._tokens = tokens
        self.stats = ClientStats()
        self._transport = transport or Transport(portal)
        self._budget = RequestBudget(redis, portal, sleep=sleep)
        self._operating = OperatingBudget(redis, portal)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Client(portal={self.portal.id!r})"

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None, *, v3: bool = False,
             idempotency_key: str | None = None, resend_lost: bool = True) -> Answer:
        """Call one method; positional ``task.*`` methods take a list, in the manifest's order.

        Raises:
            OperationTimeLimit: the method is paused (no request is sent) or the portal blocked it.
            BitrixError: after retries where retrying helps (see ``bitrix.retry``).
        """
        if method != "batch" and (paused := self._operating.check([method])):
            raise paused[method.lower()]
        attempt = 0
        token = self._tokens.access_token() if self._tokens is not None else None
        refreshed = False
        while True:
            attempt += 1
            waited = self._budget.acquire()
            self.stats.budget_wait_seconds += waited
            self.stats.requests += 1
            if waited:
                metrics.count(self.portal.id, "budget_wait_seconds", waited)
            try:
                raw = self._transport.send(method, params, v3=v3, idempotency_key=idempotency_key,
                                           access_token=token)
                answer = decode_response(method, raw.status, raw.body, raw.replayed)
            except BitrixError as error:
                metrics.count(self.portal.id, "rest_requests", method=method, code=error.code[:64])
                if not resend_lost and isinstance(error, TransportError):
                    raise  # the request may have been carried out: the caller checks before sending it again
                if error.code == "expired_token" and self._tokens is not None and not refreshed:
                    token, refreshed = self._tokens.refresh(stale=token or ""), True  # once: then it is not expiry
                    continue
                self._before_retry(error, attempt)
                continue
            metrics.count(self.portal.id, "rest_requests", method=method, code="ok")
            if method != "batch":
                self._operating.observe([(method, answer.time)])
            return answer

    def budget_wait(self) -> float:
        """Seconds the next request would wait for the portal's shared budget (nothing is taken)."""
        return self._budget.wait_seconds()

    def paused(self, methods: Iterable[str]) -> dict[str, OperationTimeLimit]:
        """The methods among ``methods`` paused for their operating time right now (no request is made)."""
        return self._operating.check(methods)

    def run(self, command: Command) -> Any:
        """Call one command and return just its result."""
        return self.call(command.method, command.params).result

    def batch(self, commands: Mapping[str, Command], halt: bool = False, resend_lost: bool = True) -> BatchResult:
        """Send any number of commands, 50 per HTTP request; per-command errors are returned, not raised.

        Commands of a paused method are not sent: they come back as OperationTimeLimit errors. With
        ``resend_lost=False`` a request whose answer was lost (``TransportError``) is not sent again: it is raised.
        """
        merged = BatchResult()
        paused = self._operating.check(command.method for command in commands.values())
        sendable = {key: c for key, c in commands.items() if c.method.lower() not in paused}
        merged.errors.update({key: paused[c.method.lower()] for key, c in commands.items() if key not in sendable})
        for part in chunks(sendable):
            answer = self.call("batch", batch_params(part, halt=halt), resend_lost=resend_lost)
            result = parse_batch(part, answer.result)
            self._operating.observe((part[key].method, timing) for key, timing in result.times.items() if key in part)
            for error in result.errors.values():
                if isinstance(error, OperationTimeLimit):
                    self._operating.blocked(error.method, error.reset_at)
            merged.merge(result)
        return merged

    def _before_retry(self, error: BitrixError, attempt: int) -> None:
        """Re-raise ``error`` unless it is worth another attempt; then wait as the error asks."""
        if isinstance(error, OperationTimeLimit):
            self._operating.blocked(error.method, error.reset_at)
        if not should_retry(error, attempt):
            raise error
        self.stats.retries += 1
        if isinstance(error, QueryLimitExceeded | ServerError):
            # Shared slow-down: every process waits for the drain, so a storm of 503s (or an
            # overloaded portal) gets fewer requests, not more.
            self._budget.penalise()
        if isinstance(error, QueryLimitExceeded):
            log.warning("bitrix.query_limit", method=error.method, attempt=attempt)
            return
        delay = backoff_seconds(attempt)
        log.warning("bitrix.retry", method=error.method, code=error.code, attempt=attempt, delay=round(delay, 2))
        self._sleep(delay)

    def close(self) -> None:
        self._transport.close()
