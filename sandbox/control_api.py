"""The control API under `/_sandbox/`: set up data, inject faults, read what the portal saw.

JSON in and out. Not counted in the request budget and not written to the REST request log.
Dates come back as ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox import apps, dates, records, seed, ufdefs
from sandbox.errors import RestError
from sandbox.rest import portal
from sandbox.store import Fault

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


class ControlError(Exception):
    """A bad control request: answered 400 (or `status`) with `{"error": message}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@bp.errorhandler(ControlError)
def _control_error(exc: ControlError) -> tuple[Response, int]:
    return jsonify(error=str(exc)), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    return jsonify(error=exc.description), exc.code or 500


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def raw(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record with dates as UTC ISO text."""
    return {key: dates.iso_utc(value) if isinstance(value, datetime) else value for key, value in record.items()}


@bp.post("/reset")
def reset() -> Response:
    """Empty the portal, restore startup settings plus overrides, load an optional seed; application-mode
    portals are removed and the startup ones created afresh."""
    body = _body()
    seed_value = body.pop("seed", None)
    the_portal = portal()
    with the_portal.lock:
        try:
            the_portal.reset(body)
            ufdefs.install_system_fields(the_portal)
            seed.apply(the_portal, seed_value)
            apps.registry().reset()
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        return jsonify(config=the_portal.config.to_dict(), tasks=len(the_portal.tasks),
                       entries=len(the_portal.entries))


@bp.route("/config", methods=["GET", "POST"])
def config() -> Response:
    """Read or change settings without touching data."""
    the_portal = portal()
    with the_portal.lock:
        if request.method == "POST":
            try:
                the_portal.configure(_body())
            except (TypeError, ValueError) as exc:
                raise ControlError(str(exc)) from exc
        return jsonify(the_portal.config.to_dict())


@bp.get("/tasks")
def task_ids() -> Response:
    """The stored tasks' IDs, ascending (what a benchmark queues)."""
    the_portal = portal()
    with the_portal.lock:
        return jsonify(ids=sorted(the_portal.tasks))


@bp.post("/tasks")
def add_task() -> Response:
    """Create a task (UPPER_CASE fields); emits ONTASKADD."""
    the_portal = portal()
    with the_portal.lock:
        try:
            task_id = records.add_task(the_portal, _body())
        except records.BadField as exc:
            raise ControlError(str(exc)) from exc
        return jsonify(id=task_id)


@bp.route("/tasks/<int:task_id>", methods=["GET", "PATCH"])
def task(task_id: int) -> Response:
    """Read a stored task, or change it as a user would (CHANGED_DATE, ONTASKUPDATE)."""
    the_portal = portal()
    with the_portal.lock:
        if task_id not in the_portal.tasks:
            raise ControlError(f"task {task_id} not found", 404)
        if request.method == "PATCH":
            try:
                values = records.coerce_task_fields(the_portal, _body(), strict=True)
            except records.BadField as exc:
                raise ControlError(str(exc)) from exc
            records.update_task(the_portal, task_id, values)
        return jsonify(raw(the_portal.tasks[task_id]))


@bp.post("/entries")
def add_entry() -> Response:
    """Create a time entry: `{task_id, seconds, comment, user_id, created_date}`; no event."""
    body = _body()
    fields = {"SECONDS": body.get("seconds"), "COMMENT_TEXT": body.get("comment", ""),
              "USER_ID": body.get("user_id", 1), "CREATED_DATE": body.get("created_date")}
    the_portal = portal()
    with the_portal.lock:
        try:
            if fields["SECONDS"] is None:
                raise records.BadField("seconds is required")
            entry_id = records.add_entry(the_portal, int(body.get("task_id", 0)), fields)
        except (records.BadField, ValueError, TypeError) as exc:
            raise ControlError(str(exc)) from exc
        return jsonify(id=entry_id)


@bp.get("/entries/<int:entry_id>")
def entry(entry_id: int) -> Response:
    """One stored entry with its derived MINUTES."""
    the_portal = portal()
    with the_portal.lock:
        found = the_portal.entries.get(entry_id)
        if found is None:
            raise ControlError(f"entry {entry_id} not found", 404)
        return jsonify(raw(records.entry_view(found)))


@bp.get("/entries")
def entries() -> Response:
    """All stored entries, or those of `?task_id=`, by id."""
    task_id = request.args.get("task_id", type=int)
    the_portal = portal()
    with the_portal.lock:
        found = [raw(records.entry_view(item)) for item in the_portal.entries.values()
                 if task_id is None or item["TASK_ID"] == task_id]
        return jsonify(found)


@bp.post("/userfields")
def add_userfield() -> Response:
    """Create a userfield definition as `task.item.userfield.add` would (no admin check)."""
    the_portal = portal()
    with the_portal.lock:
        try:
            field_id = ufdefs.add_definition(the_portal, _body())
        except RestError as exc:
            raise ControlError(exc.description.removesuffix("<br>")) from exc
        return jsonify(id=field_id)


@bp.get("/userfields/<int:field_id>")
def userfield(field_id: int) -> Response:
    """One stored definition (native values)."""
    the_portal = portal()
    with the_portal.lock:
        found = the_portal.userfields.get(field_id)
        if found is None:
            raise ControlError(f"userfield {field_id} not found", 404)
        return jsonify(found)


@bp.route("/requests", methods=["GET", "DELETE"])
def requests_log() -> Response:
    """The REST request log after `?since=seq`, or clear it."""
    the_portal = portal()
    with the_portal.lock:
        if request.method == "DELETE":
            the_portal.requests.clear()
            return jsonify(cleared=True)
        since = request.args.get("since", default=0, type=int)
        return jsonify([item for item in the_portal.requests if item["seq"] > since])


@bp.get("/events")
def events() -> Response:
    """Every outbound event and what became of it; ``?outcome=pending`` only those not delivered yet."""
    records = portal().outbox.records()
    if outcome := request.args.get("outcome"):
        records = [record for record in records if record["outcome"] == outcome]
    return jsonify(records)


@bp.route("/faults", methods=["GET", "POST", "DELETE"])
def faults() -> Response:
    """Inject a fault, list them, or clear them all."""
    the_portal = portal()
    with the_portal.lock:
        if request.method == "DELETE":
            the_portal.faults.clear()
        elif request.method == "POST":
            body = _body()
            try:
                fault = Fault(**{**body, "method": str(body.get("method", "*")).lower()})
            except TypeError as exc:
                raise ControlError(str(exc)) from exc
            the_portal.faults.append(fault)
        return jsonify([vars(item) for item in the_portal.faults])
