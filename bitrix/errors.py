"""The Bitrix24 error hierarchy, chosen by error code (never by HTTP status alone).

Messages show the method, the code and the description, never a URL: the webhook secret is part of
every request URL.

    BitrixError
    ├── QueryLimitExceeded     request budget exhausted: wait and retry
    ├── OperationTimeLimit     per-method operating time exhausted: pause that method
    ├── ServerError            5xx without a known code: retry with backoff
    ├── TransportError         network failure or an unreadable answer: retry with backoff
    ├── AuthError              webhook/token refused: do not retry
    ├── AccessDenied           no permission for this object or action: do not retry
    ├── NotFound               the object (or, for MethodNotFound, the method) does not exist
    │   └── MethodNotFound
    └── MethodError            anything else the method refused (validation, arguments)
"""

from __future__ import annotations


class BitrixError(Exception):
    """A Bitrix24 call that did not succeed."""

    retryable = False

    def __init__(self, method: str, code: str, description: str = "", status: int | None = None) -> None:
        self.method = method
        self.code = code
        self.description = description
        self.status = status
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.method}: {self.code}"
        if self.description:
            text += f": {self.description}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, code={self.code!r}, status={self.status!r})"


class QueryLimitExceeded(BitrixError):
    retryable = True


class OperationTimeLimit(BitrixError):
    retryable = True

    def __init__(self, method: str, code: str, description: str = "", status: int | None = None,
                 reset_at: float | None = None) -> None:
        self.reset_at = reset_at
        super().__init__(method, code, description, status)


class ServerError(BitrixError):
    retryable = True


class TransportError(BitrixError):
    retryable = True


class AuthError(BitrixError):
    pass


class AccessDenied(BitrixError):
    pass


class NotFound(BitrixError):
    pass


class MethodNotFound(NotFound):
    pass


class MethodError(BitrixError):
    pass


_BY_CODE: dict[str, type[BitrixError]] = {
    "QUERY_LIMIT_EXCEEDED": QueryLimitExceeded,
    "OPERATION_TIME_LIMIT": OperationTimeLimit,
    "ERROR_METHOD_NOT_FOUND": MethodNotFound,
    "ACCESS_DENIED": AccessDenied,
    "ACTION_NOT_ALLOWED": AccessDenied,
    "WRONG_AUTH_TYPE": AccessDenied,
    "METHOD_CONFIRM_DENIED": AccessDenied,
    "ERROR_NOT_FOUND": NotFound,
    "INTERNAL_SERVER_ERROR": ServerError,
    "ERROR_UNEXPECTED_ANSWER": ServerError,
    "OVERLOAD_LIMIT": ServerError,
}
_AUTH_CODES = {"expired_token", "invalid_token", "NO_AUTH_FOUND", "INVALID_CREDENTIALS", "insufficient_scope",
               "authorization_error", "user_access_error", "APPLICATION_NOT_FOUND", "PORTAL_DELETED",
               "METHOD_CONFIRM_WAITING", "INVALID_REQUEST"}
# REST 3.0 codes: the prefix is EXCEPTION_ or EXCEPTIONS_ depending on the server, so match the suffix.
_V3_SUFFIXES: tuple[tuple[str, type[BitrixError]], ...] = (
    ("ACCESSDENIEDEXCEPTION", AccessDenied),
    ("INSUFFICIENTSCOPEEXCEPTION", AuthError),
    ("ENTITYNOTFOUNDEXCEPTION", NotFound),
    ("METHODNOTFOUNDEXCEPTION", MethodNotFound),
    ("RATELIMITEXCEPTION", OperationTimeLimit),
)
# Old task.* methods fold everything into ERROR_CORE (or a TASKS_ERROR_* code); the text says what
# happened, in either of the forms the docs show: "TASKS_ERROR_EXCEPTION_#4; Action not allowed; 4/..." or a
# plain "ACTION_NOT_ALLOWED" / "Task not found". Compared case-insensitively.
_CORE_TEXT: tuple[tuple[str, type[BitrixError]], ...] = (
    ("access denied", AccessDenied),
    ("#1048578;", AccessDenied),
    ("#4;", AccessDenied),
    ("action not allowed", AccessDenied),
    ("action_not_allowed", AccessDenied),
    ("not found", NotFound),
    ("#1;", NotFound),
    ("#512;", NotFound),
)


def error_class(code: str, description: str = "", status: int | None = None) -> type[BitrixError]:
    """The one place that maps an answer to an error class: by code, then text, then status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code in _AUTH_CODES:
        return AuthError
    upper = code.upper()
    for suffix, cls in _V3_SUFFIXES:
        if upper.endswith(suffix):
            return cls
    if code == "ERROR_CORE" or upper.startswith("TASKS_ERROR"):
        lowered = description.lower()
        for text, cls in _CORE_TEXT:
            if text in lowered:
                return cls
    if status is not None and status >= 500:
        return ServerError
    return MethodError


def make_error(method: str, code: str, description: str = "", status: int | None = None,
               reset_at: float | None = None) -> BitrixError:
    """Build the right error for an answer."""
    cls = error_class(code, description, status)
    if cls is OperationTimeLimit:
        return OperationTimeLimit(method, code, description, status, reset_at=reset_at)
    return cls(method, code, description, status)
