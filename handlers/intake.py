"""``POST /bitrix24/events``: size, content type, parse, token, member, subscription, coalesce.

No Bitrix24 call happens here; the answer only says what was queued.

The endpoint is WSGI middleware in front of the Flask app (``app.wsgi_app``, as Flask's docs wrap it),
not a Flask view: Flask's request and app contexts, URL matching, ``Request`` and ``Response`` objects
cost more CPU per request than intake's own parsing, and intake has to keep up with a bare Flask endpoint
(``bench/ingest.py``, docs/performance.md). Every other path goes on
to Flask untouched. What a Flask view would have given is kept: one JSON answer per outcome, 405 for
other methods, the body limit, per-request log context, and a logged 500 for a bug.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

import keys
import metrics
from config.rules import RuleSet
from handlers.coalesce import coalesce
from handlers.enqueue_script import QueueFull
from handlers.installs import UNINSTALL_EVENTS, answer_install, portal_view, touch, uninstall, verify_app_event
from handlers.parse import Event
from handlers.refusals import BodyTimeout, IntakeError, MalformedEvent, PayloadTooLarge, Unauthorized, unexpected_error
from handlers.spool import Spool
from handlers.verify import token_digest, token_matches, verify_member, verify_token
from portals import registry
from queueing import enqueue_offline_drain
from runtime import Runtime

log = structlog.get_logger(__name__)

PATHS = frozenset({"/bitrix24/events", "/bitrix24/events/"})
INSTALL_PATHS = frozenset({"/bitrix24/install", "/bitrix24/install/"})
"""Application mode's installation callback (``handlers.installs``); answered 404 in webhook mode."""
MAX_BODY_BYTES = 64 * 1024
"""Real task events are well under 2 KiB; 64 KiB is the contract's limit (SPEC section 3)."""

Answer = tuple[int, dict[str, Any]]
"""An HTTP status and the JSON body that goes with it."""


class IntakeMiddleware:
    """WSGI: answers requests for :data:`PATHS` itself and hands every other request to ``wsgi_app``.

    The first request a process serves starts its background threads (``start_background``): a process
    that builds the app only to run a command never starts them.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], rt: Runtime, spool: Spool) -> None:
        self.wsgi_app, self.rt, self.spool = wsgi_app, rt, spool
        self.serving = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.serving:
            self.serving = True
            try:
                start_background(self.rt, self.spool)
            except Exception:  # a bug there must not fail the request that happened to come first
                log.exception("intake.background_failed")
        path = environ.get("PATH_INFO")
        install = path in INSTALL_PATHS and self.rt.settings.app_mode
        if path not in PATHS and not install:
            return self.wsgi_app(environ, start_response)
        headers = [("Content-Type", "application/json")]
        try:
            if environ.get("REQUEST_METHOD") == "POST" and install:
                status, body = answer_install(self.rt, media_type(environ),
                                              read_body(environ, self.rt.settings.taskwarden_body_timeout))
            elif environ.get("REQUEST_METHOD") == "POST":
                status, body = answer_event(self.rt, self.spool, environ)
            else:
                status, body = 405, {"status": "error", "error": "method_not_allowed"}
                headers.append(("Allow", "POST"))
        except Exception as error:
            status, body = unexpected_error(error)
        finally:
            structlog.contextvars.clear_contextvars()
        payload = orjson.dumps(body)
        headers.append(("Content-Length", str(len(payload))))
        start_response(_STATUS_LINES[status], headers)
        return [payload]


def start_background(rt: Runtime, spool: Spool) -> None:
    """A serving process's threads: the metrics flusher, and the spool's drainer when a process that died
    while Redis was down left events behind."""
    metrics.start_flusher(rt.redis)
    with suppress(RedisError):  # Redis may be away at start; the workers' entries still show in `status`
        rt.redis.hset(keys.rules_running(rt.portal.id), f"web:{socket.gethostname()}", rt.rules.digest)
    if spool.pending_files():
        spool.start_drainer(rt.redis, queue_spooled(rt))


def answer_event(rt: Runtime, spool: Spool, environ: dict[str, Any]) -> Answer:
    """The answer to one POST: what was queued, or why the event was refused (logged and counted)."""
    try:
        return take_event(rt, spool, media_type(environ),
                          read_body(environ, rt.settings.taskwarden_body_timeout))
    except IntakeError as error:
        log.info("intake.rejected", status=error.status_code, reason=error.message)
        metrics.count(rt.portal.id, "events", outcome="rejected")
        return error.status_code, error.to_dict()


def take_event(rt: Runtime, spool: Spool, content_type: str, body: bytes) -> Answer:
    """Parse, verify and coalesce one event. Raises :class:`IntakeError` for an event to refuse."""
    event = Event.from_request(content_type, body)
    event_id = event.event_id
    # member_id is the portal's public id (not a secret): logged so an admin can find the value to configure
    structlog.contextvars.bind_contextvars(event_id=event_id, task_id=event.task_id, member_id=event.member_id)
    if rt.settings.app_mode:
        return take_app_event(rt, spool, event)
    verify_token(event.application_token, rt.portal.application_token)
    verify_member(event.member_id, rt.portal.member_id)
    return queue_event(rt, spool, event, rt.portal.id, rt.rules)


def take_app_event(rt: Runtime, spool: Spool, event: Event) -> Answer:
    """An installed portal's event: found by member_id, its token checked against that portal's; an
    uninstall is carried out here (Redis only).

    Without Redis the portal cannot be looked up: a task event is spooled with its token's digest and checked
    when it is queued (``queue_spooled``); anything else is answered 503.
    """
    try:
        return _take_app_event(rt, spool, event)
    except RedisError as exc:
        if event.name in UNINSTALL_EVENTS or event.name == "ONOFFLINEEVENT" or not event.member_id \
                or not event.application_token or event.task_id is None or event.bad_task_id:
            log.warning("intake.unavailable", redis_error=type(exc).__name__)
            metrics.count("app", "events", outcome="unavailable")
            return 503, {"status": "unavailable", "event_id": event.event_id, "reason": "redis unavailable"}
        record = {"event_name": event.name, "task_id": event.task_id, "event_id": event.event_id,
                  "portal_id": event.member_id, "token_sha256": token_digest(event.application_token)}
        return _spool(rt, spool, record, exc)


def _take_app_event(rt: Runtime, spool: Spool, event: Event) -> Answer:
    if event.name in UNINSTALL_EVENTS:
        view = portal_view(rt, event.member_id) if event.member_id else None
        if view is not None and view.status == registry.REMOVED:
            return 200, {"status": "ignored", "event_id": event.event_id, "reason": "already uninstalled"}
        view = verify_app_event(rt, event.member_id, event.application_token)
        uninstall(rt, view.member_id, clean=event.clean)
        return 200, {"status": "uninstalled", "event_id": event.event_id, "clean": event.clean}
    view = verify_app_event(rt, event.member_id, event.application_token)
    if view.status != registry.ACTIVE:
        raise Unauthorized(f"the portal is {view.status}")
    touch(rt.redis, view.member_id)
    if event.name == "ONOFFLINEEVENT":  # the portal's offline queue has rows: drain it now
        enqueue_offline_drain(rt.queue(), view.member_id)
        metrics.count(view.member_id, "events", outcome="offline_drain")
        return 200, {"status": "queued", "event_id": event.event_id, "jobs": 1}
    return queue_event(rt, spool, event, view.member_id, view.rules)


def queue_event(rt: Runtime, spool: Spool, event: Event, portal_id: str, rules: RuleSet) -> Answer:
    """Coalesce a verified event of ``portal_id`` (or spool it), unless no rule subscribes to it."""
    event_id = event.event_id
    if event.name not in rules.subscribed_events:
        log.info("intake.ignored", event_name=event.name)
        metrics.count(portal_id, "events", outcome="ignored")
        return 200, {"status": "ignored", "event_id": event_id, "reason": "no rule subscribes to this event"}
    if event.bad_task_id:
        raise MalformedEvent("task id is not a number: data[FIELDS_AFTER][ID] must be a positive integer")
    if event.task_id is None:
        raise MalformedEvent("no task id in data[FIELDS_AFTER][ID] or data[FIELDS_BEFORE][ID]")
    try:
        status = coalesce(rt.redis, rt.queue(), portal_id, event.task_id, event_name=event.name,
                          event_id=event_id, rules_digest=rules.digest,
                          max_waiting=rt.settings.taskwarden_max_waiting)
    except (RedisError, QueueFull) as exc:
        record = {"event_name": event.name, "task_id": event.task_id, "event_id": event_id, "portal_id": portal_id}
        return _spool(rt, spool, record, exc)
    log.info(f"intake.{status}", event_name=event.name)
    metrics.count(portal_id, "events", outcome=status)
    if status == "queued":
        return 200, {"status": status, "event_id": event_id, "jobs": 1}
    return 200, {"status": status, "event_id": event_id}


def _spool(rt: Runtime, spool: Spool, record: dict[str, Any], cause: Exception) -> Answer:
    """Redis is down, or the portal has as many tasks waiting as it may: keep the verified event on disk and
    answer 202; it is queued when Redis answers and the queue has room again."""
    try:
        spool.append(record)
    except OSError as exc:
        log.error("intake.spool_failed", error=type(exc).__name__, redis_error=type(cause).__name__)
        return 503, {"status": "unavailable", "event_id": record["event_id"], "reason": "queue and spool unavailable"}
    spool.start_drainer(rt.redis, queue_spooled(rt))
    full = isinstance(cause, QueueFull)
    log.warning("intake.spooled", reason="queue_full" if full else "redis", redis_error=type(cause).__name__)
    metrics.count(rt.portal.id, "events", outcome="queue_full" if full else "spooled")
    return 202, {"status": "spooled", "event_id": record["event_id"], **({"reason": "queue_full"} if full else {})}


def queue_spooled(rt: Runtime) -> Callable[[dict[str, Any]], str]:
    """How a spooled event is queued once Redis is back: exactly like a fresh one (coalescing applies)."""
    def handle(record: dict[str, Any]) -> str:
        portal_id = record.get("portal_id") or rt.portal.id
        view = portal_view(rt, portal_id) if rt.settings.app_mode else None
        if "token_sha256" in record and not (view is not None and view.status == registry.ACTIVE
                                             and token_matches(record["token_sha256"], view.application_token)):
            # spooled before its portal could be looked up, and not from an active portal with that token
            log.warning("spool.refused", event_id=record["event_id"], portal=portal_id)
            metrics.count("app", "events", outcome="rejected")
            return "refused"
        rules = view.rules if view is not None else rt.rules  # an installed portal may have rules of its own
        return coalesce(rt.redis, rt.queue(), portal_id, record["task_id"], event_name=record["event_name"],
                        event_id=record["event_id"], rules_digest=rules.digest,
                        max_waiting=rt.settings.taskwarden_max_waiting)
    return handle


def media_type(environ: dict[str, Any]) -> str:
    """The Content-Type without parameters (``charset``...), lower-cased, as Werkzeug's ``mimetype``."""
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def read_body(environ: dict[str, Any], timeout: float | None = None) -> bytes:
    """Refuse an oversize body before reading it whole: the declared length first, then a capped read.

    As Werkzeug does: without a usable Content-Length the body is read only when the server says the
    stream ends by itself (``wsgi.input_terminated``, as for chunked bodies); otherwise it is empty.

    Under gunicorn the read is bounded by ``timeout`` on the client's socket (``gunicorn.socket``): a client
    that sends its headers and never finishes its body is answered 408 and let go, instead of holding one of
    the worker's connections for as long as it likes, before any token was checked.
    """
    with _read_deadline(environ.get("gunicorn.socket"), timeout):
        return _read_body(environ)


@contextmanager
def _read_deadline(sock: Any, timeout: float | None) -> Iterator[None]:
    previous = sock.gettimeout() if sock is not None and timeout else None
    if sock is not None and timeout:
        sock.settimeout(timeout)
    try:
        yield
    except TimeoutError:  # socket.timeout, gevent's included
        # The rest of that body may still come: stop reading the socket, so that the server sends our answer
        # and then closes, instead of reading those bytes as the next request.
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        raise BodyTimeout(f"body not received within {timeout:g} s") from None
    finally:
        if sock is not None and timeout:
            sock.settimeout(previous)


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length: int | None = max(int(environ.get("CONTENT_LENGTH") or ""), 0)
    except ValueError:
        length = None
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body over {MAX_BODY_BYTES} bytes")
    if length is None and not environ.get("wsgi.input_terminated"):
        return b""
    body = environ["wsgi.input"].read(MAX_BODY_BYTES + 1 if length is None else length)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body over {MAX_BODY_BYTES} bytes")
    return bytes(body)


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
