"""The admin API: ``GET /audit`` and ``GET /report``, behind ``TASKWARDEN_ADMIN_TOKEN``.

Without a configured token both answer 404 (SPEC section 2).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, request

import audit
import report
from web.auth import admin_allowed

bp = Blueprint("admin", __name__)
MAX_LIMIT = 1000


@bp.before_request
def require_admin_token() -> None:
    if not admin_allowed(request):
        abort(401)


@bp.get("/audit")
def audit_trail() -> tuple[Response, int]:
    rt = current_app.extensions["taskwarden"]
    try:
        task = int(request.args["task"]) if request.args.get("task") else None
        limit = min(int(request.args.get("limit", 100)), MAX_LIMIT)
    except ValueError:
        return jsonify(status="error", error="bad_request", message="task and limit must be integers"), 400
    decisions = [{**decision, "portal": portal_id} for portal_id in rt.portal_ids(request.args.get("portal"))
                 for decision in audit.query(rt.redis, portal_id, task=task, rule=request.args.get("rule") or None,
                                             outcome=request.args.get("outcome") or None, limit=max(limit, 1))]
    decisions = sorted(decisions, key=lambda decision: decision["time"], reverse=True)[:max(limit, 1)]
    return jsonify(decisions=decisions, count=len(decisions)), 200


@bp.get("/report")
def compliance_report() -> tuple[Response, int]:
    rt = current_app.extensions["taskwarden"]
    try:
        limit = min(int(request.args.get("limit", report.DEFAULT_TASKS_PER_RULE)), MAX_LIMIT)
    except ValueError:
        return jsonify(status="error", error="bad_request", message="limit must be an integer"), 400
    rules = [{**item, "portal": portal_id} for portal_id in rt.portal_ids(request.args.get("portal"))
             for item in report.build(rt.redis, portal_id, limit=max(limit, 1),
                                      local_rules=rt.rules.rules if not rt.settings.app_mode else ())["rules"]]
    return jsonify(rules=rules, limit=max(limit, 1)), 200

