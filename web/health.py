"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers and the rules are loaded)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    rt = current_app.extensions["taskwarden"]
    try:
        rt.redis.ping()
    except RedisError as exc:
        return jsonify(status="unavailable", reason=f"redis: {type(exc).__name__}"), 503
    return jsonify(status="ready", rules=len(rt.rules.rules)), 200
