"""Why intake refuses an event, each reason with its HTTP status, and the one answer to a bug (500)."""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger(__name__)


def unexpected_error(error: Exception) -> tuple[int, dict[str, Any]]:
    """A bug, not client input: logged with its traceback (redacted), answered 500 without one. Intake's
    middleware and the Flask app both answer this way."""
    log.exception("http.unexpected_error", error=type(error).__name__)
    return 500, {"status": "error", "error": "internal_error"}


class IntakeError(Exception):
    """An event refused for a reason the sender can act on."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"status": "error", "error": self.code, "message": self.message}


class MalformedEvent(IntakeError):
    status_code = 400
    code = "malformed"


class Unauthorized(IntakeError):
    status_code = 401
    code = "unauthorized"


class PayloadTooLarge(IntakeError):
    status_code = 413
    code = "too_large"


class BodyTimeout(IntakeError):
    status_code = 408
    code = "body_timeout"


class UnsupportedMediaType(IntakeError):
    status_code = 415
    code = "unsupported_media_type"
