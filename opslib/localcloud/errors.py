"""Google's JSON error model: one place maps a canonical code to its HTTP status and shape."""

from __future__ import annotations

from typing import Any

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNKNOWN": 500,
}
# A target's HTTP answer as the rpc code Scheduler logs for it: the mapping above read backwards,
# where two codes share a status taking the one google.rpc.Code names for it.
RPC_OF_HTTP = {
    status: code
    for code, status in HTTP_STATUS.items()
    if code not in ("FAILED_PRECONDITION", "OUT_OF_RANGE", "ALREADY_EXISTS", "UNKNOWN")
}
RPC_CODE = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


class ApiError(Exception):
    """An error answered in Google's shape: {"error": {code, message, status, details}}."""

    def __init__(self, status: str, message: str, violations: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.violations = status, message, violations or []

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.violations:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": f, "description": d} for f, d in self.violations],
                }
            ]
        return {"error": error}

    def rpc_status(self) -> dict[str, Any]:
        """The google.rpc.Status form, as in an Operation's `error`."""
        return {"code": RPC_CODE[self.status], "message": self.message}


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, [(field, message)] if field else None)


def not_found(message: str) -> ApiError:
    return ApiError("NOT_FOUND", message)


def already_exists(message: str) -> ApiError:
    return ApiError("ALREADY_EXISTS", message)


def failed_precondition(message: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message)
