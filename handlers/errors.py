"""Intake errors, each carrying its HTTP status; one error handler turns them into JSON answers."""

from __future__ import annotations

from typing import Any


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


class UnsupportedMediaType(IntakeError):
    status_code = 415
    code = "unsupported_media_type"
