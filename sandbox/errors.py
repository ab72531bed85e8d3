"""REST errors the simulated methods raise, in the portal's two envelopes (reference §2.4, §2.5, §7.8)."""

from __future__ import annotations

from typing import Any

V3_PREFIX = "BITRIX_REST_V3_EXCEPTION_"


class RestError(Exception):
    """A classic error: HTTP status plus `{"error": code, "error_description": text}`."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        """The classic error envelope."""
        return {"error": self.code, "error_description": self.description}


class V3Error(RestError):
    """A REST 3.0 error: `{"error": {"code", "message", "validation"?}}`."""

    def __init__(self, status: int, suffix: str, message: str, validation: list[dict] | None = None) -> None:
        super().__init__(status, V3_PREFIX + suffix, message)
        self.validation = validation

    def body(self) -> dict[str, Any]:
        """The REST 3.0 error envelope; `validation` only for request-validation errors."""
        error: dict[str, Any] = {"code": self.code, "message": self.description}
        if self.validation is not None:
            error["validation"] = self.validation
        return {"error": error}


def method_not_found() -> RestError:
    """What the REST core answers for a method it does not know."""
    return RestError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


def invalid_credentials() -> RestError:
    """Wrong webhook user or code (status by source default, §2.4)."""
    return RestError(401, "INVALID_CREDENTIALS", "Invalid request credentials")


def query_limit() -> RestError:
    """The request-rate bucket is full (§3.1; status per current docs)."""
    return RestError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")


def operation_time_limit() -> RestError:
    """The method used up its operating time for the window (§3.2)."""
    return RestError(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")


# TasksException codes and symbols, rendered as `<code>/TE/<SYMBOL>` (§7.8).
TE_TASK_NOT_FOUND = (1, "TASK_NOT_FOUND_OR_NOT_ACCESSIBLE")
TE_ACTION_NOT_ALLOWED = (4, "ACTION_NOT_ALLOWED")
TE_WRONG_ARGUMENTS = (256, "WRONG_ARGUMENTS")
TE_ITEM_NOT_FOUND = (512, "ITEM_NOT_FOUND_OR_NOT_ACCESSIBLE")


def tasks_exception(kind: tuple[int, str], message: str = "") -> RestError:
    """A TasksException as it reaches the client through `CTaskRestService::__callStatic`."""
    code, symbol = kind
    return core_error(f"TASKS_ERROR_EXCEPTION_#{code}; {message}; {code}/TE/{symbol}")


def assert_exception() -> RestError:
    """A CTaskAssertException: the text carries no detail at all."""
    return core_error("TASKS_ERROR_ASSERT_EXCEPTION")


def core_error(text: str) -> RestError:
    """Any error re-thrown as a CAdminException: code ERROR_CORE, text + `<br>`, HTTP 400."""
    return RestError(400, "ERROR_CORE", f"{text}<br>")


def wrong_auth_type() -> RestError:
    """A method that works only with an application's OAuth token, called with a webhook (`AuthTypeException`)."""
    return RestError(403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")


def access_denied(detail: str = "") -> RestError:
    """`AccessException`: "Access denied!", with the reason after it when there is one."""
    return RestError(403, "ACCESS_DENIED", f"Access denied! {detail}".strip())


def argument_null(name: str) -> RestError:
    """`Rest\\Exceptions\\ArgumentNullException`: a required parameter is missing or empty."""
    return RestError(400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty")


def argument_error(text: str) -> RestError:
    """`Rest\\Exceptions\\ArgumentException` and plain RestExceptions with ERROR_ARGUMENT, HTTP 400."""
    return RestError(400, "ERROR_ARGUMENT", text)
