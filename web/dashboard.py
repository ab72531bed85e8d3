"""The RQ dashboard (rq-dashboard) at ``/rq``, behind ``TASKWARDEN_ADMIN_TOKEN``.

rq-dashboard has no authentication of its own and can delete and requeue jobs, so every ``/rq`` request
needs the admin token: as a bearer token, or as the password of HTTP basic auth so that a browser can
open it. Without a configured token the dashboard answers 404, like the rest of the admin API.
"""

from __future__ import annotations

from flask import Flask, Response, request
from rq.serializers import JSONSerializer

from web.auth import admin_allowed

PREFIX = "/rq"


def init_app(app: Flask) -> None:
    import rq_dashboard

    rq_dashboard.web.config.serializer = JSONSerializer  # our jobs are JSON, not pickles
    app.config["RQ_DASHBOARD_REDIS_URL"] = app.extensions["taskwarden"].settings.redis_url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    app.before_request(_require_admin)


def _require_admin() -> Response | None:
    if request.path != PREFIX and not request.path.startswith(f"{PREFIX}/"):
        return None
    if admin_allowed(request):
        return None
    return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="taskwarden"'})
