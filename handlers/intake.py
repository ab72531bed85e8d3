"""``POST /bitrix24/events``: size, content type, parse, token, member, subscription, coalesce.

No Bitrix24 call happens here; the answer only says what was queued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

import metrics
from handlers.coalesce import coalesce
from handlers.errors import IntakeError, MalformedEvent, PayloadTooLarge
from handlers.parse import Event
from handlers.spool import Spool
from handlers.verify import verify_member, verify_token
from runtime import Runtime

log = structlog.get_logger(__name__)
bp = Blueprint("intake", __name__)

MAX_BODY_BYTES = 64 * 1024
"""Real task events are well under 2 KiB; 64 KiB is the contract's limit (SPEC section 3)."""


@bp.post("/bitrix24/events")
@bp.post("/bitrix24/events/")
def receive_event() -> tuple[Response, int]:
    rt: Runtime = current_app.extensions["taskwarden"]
    event = Event.from_request(request.mimetype, _read_body())
    # member_id is the portal's public id (not a secret): logged so an admin can find the value to configure
    structlog.contextvars.bind_contextvars(event_id=event.event_id, task_id=event.task_id, member_id=event.member_id)
    verify_token(event.application_token, rt.portal.application_token)
    verify_member(event.member_id, rt.portal.member_id)
    if event.name not in rt.rules.subscribed_events:
        log.info("intake.ignored", event_name=event.name)
        metrics.count(rt.portal.id, "events", outcome="ignored")
        return jsonify(status="ignored", event_id=event.event_id, reason="no rule subscribes to this event"), 200
    if event.task_id is None:
        raise MalformedEvent("no task id in data[FIELDS_AFTER][ID] or data[FIELDS_BEFORE][ID]")
    try:
        status = coalesce(rt.redis, rt.queue(), rt.portal.id, event.task_id, event_name=event.name,
                          event_id=event.event_id)
    except RedisError as exc:
        return _spool(rt, {"event_name": event.name, "task_id": event.task_id, "event_id": event.event_id}, exc)
    log.info(f"intake.{status}", event_name=event.name)
    metrics.count(rt.portal.id, "events", outcome=status)
    body: dict[str, Any] = {"status": status, "event_id": event.event_id}
    if status == "queued":
        body["jobs"] = 1
    return jsonify(body), 200


def _spool(rt: Runtime, record: dict[str, Any], cause: Exception) -> tuple[Response, int]:
    """Redis is down: keep the verified event on disk and answer 202; it is queued when Redis is back."""
    spool: Spool = current_app.extensions["taskwarden_spool"]
    try:
        spool.append(record)
    except OSError as exc:
        log.error("intake.spool_failed", error=type(exc).__name__, redis_error=type(cause).__name__)
        return jsonify(status="unavailable", event_id=record["event_id"], reason="queue and spool unavailable"), 503
    spool.start_drainer(rt.redis, queue_spooled(rt))
    log.warning("intake.spooled", redis_error=type(cause).__name__)
    metrics.count(rt.portal.id, "events", outcome="spooled")
    return jsonify(status="spooled", event_id=record["event_id"]), 202


def queue_spooled(rt: Runtime) -> Callable[[dict[str, Any]], str]:
    """How a spooled event is queued once Redis is back: exactly like a fresh one (coalescing applies)."""
    def handle(record: dict[str, Any]) -> str:
        return coalesce(rt.redis, rt.queue(), rt.portal.id, record["task_id"], event_name=record["event_name"],
                        event_id=record["event_id"])
    return handle


@bp.errorhandler(IntakeError)
def intake_error(error: IntakeError) -> tuple[Response, int]:
    log.info("intake.rejected", status=error.status_code, reason=error.message)
    metrics.count(current_app.extensions["taskwarden"].portal.id, "events", outcome="rejected")
    return jsonify(error.to_dict()), error.status_code


def _read_body() -> bytes:
    """Refuse an oversize body before reading it whole (declared length first, then a capped read)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body over {MAX_BODY_BYTES} bytes")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body over {MAX_BODY_BYTES} bytes")
    return body
