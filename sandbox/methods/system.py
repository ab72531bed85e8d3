"""`feature.get` and `app.info`: what an application asks about the portal before relying on a feature."""

from __future__ import annotations

from sandbox.calls import CLASSIC, Call, Outcome, register
from sandbox.errors import RestError, access_denied
from sandbox.methods.event_bind import upper_keys

OFFLINE_EXTENDED = "rest_offline_extended"


@register(CLASSIC, "feature.get")
def feature_get(call: Call) -> Outcome:
    """`{"value": "Y"|"N"}`. Only `rest_offline_extended` depends on the plan (`offline_extended`); like the
    server, any other code answers "Y" without checking that it exists."""
    code = upper_keys(call.params).get("CODE")
    if code in (None, "", "0", 0, False):
        raise RestError(400, "CODE_EMPTY", "CODE can't be empty")
    if code == OFFLINE_EXTENDED:
        return Outcome({"value": "Y" if call.portal.config.offline_extended else "N"})
    return Outcome({"value": "Y"})


@register(CLASSIC, "app.info")
def app_info(call: Call) -> Outcome:
    """The calling application: a local application, installed or not; webhooks have no application."""
    app = call.portal.app
    if app is None:
        raise access_denied("Application context required")
    return Outcome({"ID": 1, "CODE": call.portal.config.app_client_id, "VERSION": 1, "STATUS": "L",
                    "INSTALLED": app.installed, "PAYMENT_EXPIRED": "N", "DAYS": None, "LANGUAGE_ID": "en",
                    "LICENSE": "en_project", "LICENSE_TYPE": "project", "LICENSE_FAMILY": "project"})
