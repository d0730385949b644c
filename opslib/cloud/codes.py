"""Google's rpc status codes by name: how a Scheduler attempt, an operation or an error ended.

A Scheduler job's `status.code`, a long-running operation's `error.code` and an API error all
carry the same google.rpc.Code numbers; every page says them the same way (OK, NOT_FOUND,
DEADLINE_EXCEEDED), through `name`.
"""

from __future__ import annotations

from google.rpc import code_pb2

OK = "OK"


def name(code: int | None) -> str:
    """NOT_FOUND for 5; a number Google has not named stays a number."""
    if not code:
        return OK
    return code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code)


def status_text(code: int | None, message: str = "") -> str:
    """`NAME: message`, as a status column shows an attempt's outcome."""
    label = name(code)
    return f"{label}: {message}" if message else label


# google.rpc codes by HTTP status, as Google's REST gateway maps them (google/rpc/code.proto).
_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def of_error(exc: object) -> str:
    """The rpc code name of an API error: Google's own `status` word when the answer has one.

    Over REST the client raises by HTTP status (a 403 is `Forbidden`, not `PermissionDenied`),
    so the class alone cannot tell FAILED_PRECONDITION from INVALID_ARGUMENT.
    """
    grpc = getattr(exc, "grpc_status_code", None)
    if grpc is not None:
        return str(grpc.name)
    response = getattr(exc, "response", None)
    try:
        word = response.json()["error"]["status"]  # type: ignore[union-attr]
    except Exception:  # no body, not JSON, or another shape: fall back on the HTTP status
        word = None
    if isinstance(word, str) and word:
        return word
    code = getattr(exc, "code", None)
    return _BY_HTTP.get(code, str(code)) if isinstance(code, int) else "UNKNOWN"
