"""The RQ dashboard (rq-dashboard) at ``/rq``, behind ``TASKWARDEN_ADMIN_TOKEN``.

rq-dashboard has no authentication of its own and can delete and requeue jobs, so every ``/rq`` request
needs the admin token: as a bearer token, or as the password of HTTP basic auth so that a browser can
open it. Without a configured token the dashboard answers 404, like the rest of the admin API.

The dashboard uses the process's own Redis client (``redis_connect``), the one intake uses: one server or
the Sentinel-managed master alike, and it follows a failover as intake does. rq-dashboard would otherwise
build a client from a URL of its own on every request.
"""

from __future__ import annotations

from flask import Flask, Response, request
from rq.serializers import JSONSerializer

from redis_connect import describe
from web.auth import admin_allowed

PREFIX = "/rq"


def init_app(app: Flask) -> None:
    import rq_dashboard

    rt = app.extensions["taskwarden"]
    rq_dashboard.web.config.serializer = JSONSerializer  # our jobs are JSON, not pickles
    app.config["RQ_DASHBOARD_REDIS_URL"] = (describe(rt.settings),)  # shown in its navigation bar only
    app.redis_conn = rt.redis  # type: ignore[attr-defined]  # where rq-dashboard's views take their client
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    hooks = app.before_request_funcs.get(rq_dashboard.blueprint.name, [])
    # its per-request hook connects to RQ_DASHBOARD_REDIS_URL again, which here only names the server
    app.before_request_funcs[rq_dashboard.blueprint.name] = [
        hook for hook in hooks if hook is not rq_dashboard.web.push_rq_connection]
    app.before_request(_require_admin)


def _require_admin() -> Response | None:
    if request.path != PREFIX and not request.path.startswith(f"{PREFIX}/"):
        return None
    if admin_allowed(request):
        return None
    return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="taskwarden"'})
