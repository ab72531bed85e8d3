"""Reading request params the way the portal does (reference §2.2).

Classic: query string + form body with PHP bracket keys, or a JSON body when Content-Type is
exactly `application/json`; invalid JSON is an empty body; body keys replace query keys.
REST 3.0: JSON body only; the query string is ignored.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Request

from sandbox.phpform import parse_str
from sandbox.records import php_int

CONTROL_PARAMS = ("auth", "access_token", "auth_connector", "state")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class InvalidJson(ValueError):
    """A REST 3.0 body that is not a JSON object."""


def content_type(request: Request) -> str:
    """The Content-Type before any `;` parameters, as PHP compares it."""
    return request.headers.get("Content-Type", "").split(";")[0].strip()


def classic_params(request: Request) -> dict[str, Any]:
    """Query params overlaid with body params, in wire order (`array_replace`)."""
    params = parse_str(request.query_string.decode("utf-8", "replace"))
    if request.method == "POST":
        params.update(_classic_body(request))
    return params


def _classic_body(request: Request) -> dict[str, Any]:
    kind = content_type(request)
    if kind == "multipart/form-data":
        return parse_str(urlencode(list(request.form.items(multi=True))))
    raw = request.get_data(cache=True, as_text=False)
    if kind == "application/json":
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return {}  # invalid JSON is silently an empty request
        return _as_array(body)
    return parse_str(raw.decode("utf-8", "replace"))


def _as_array(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return {str(key): value for key, value in body.items()}
    if isinstance(body, list):
        return {str(index): value for index, value in enumerate(body)}
    return {}


def split_control(params: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """Remove the REST core's control params; `start` is kept aside for list navigation."""
    cleaned = {key: value for key, value in params.items() if key not in CONTROL_PARAMS and key != "start"}
    start = php_int(params["start"]) if "start" in params else None
    return cleaned, start


def v3_params(request: Request, method: str = "") -> dict[str, Any]:
    """The JSON object body of a REST 3.0 call; a GET without body is `{}`. The v3 `batch` takes a JSON
    array, handed to its handler as `{"_items": [...]}`.

    Raises:
        InvalidJson: the body is not JSON (form bodies included) or not an object.
    """
    raw = request.get_data(cache=True, as_text=False)
    if not raw and request.method == "GET":
        return {}
    if content_type(request) != "application/json":
        raise InvalidJson("Content-Type must be application/json")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise InvalidJson(str(exc)) from exc
    if method == "batch" and isinstance(body, list):
        return {"_items": body}
    if not isinstance(body, dict):
        raise InvalidJson("the body must be a JSON object")
    return body
