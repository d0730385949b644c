"""Google's errors as opslib's: where it failed, what Google said, and the fix, mapped once.

Every step calls Google through `call` or inside `google_errors`, so the same answer reads the
same way in every command and notebook: a denied call names the role to grant (the caller's
`fix` when it knows a narrower one), a disabled API the command that enables it, a 400 the
fields Google rejected (a `BadInput`, exit 2), and a target that does not answer how to start
it. Over REST the clients raise by HTTP status (a 403 is `Forbidden`, not `PermissionDenied`),
so errors are told apart by their rpc code (`codes.of_error`), never by class.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions

from opslib.cloud import codes
from opslib.core.errors import BadInput, OpslibError

T = TypeVar("T")
MESSAGE_MAX = 300  # characters of Google's message kept in a one-line error
# The predefined role that grants what opslib calls on each API (the `api` of `call`).
ROLES = {
    "run": "roles/run.admin",
    "scheduler": "roles/cloudscheduler.admin",
    "logging": "roles/logging.viewer",
    "secretmanager": "roles/secretmanager.admin",
    "cloudbuild": "roles/cloudbuild.builds.editor",
    "storage": "roles/storage.admin",
    "monitoring": "roles/monitoring.editor",  # alert policies and notification channels
}
_RETRY = "run the step again; if it persists, check https://status.cloud.google.com"
_GENERIC = {
    "NOT_FOUND": "check the project, the region and the name",
    "INVALID_ARGUMENT": "correct the spec (opslib check PARAMS), then run the step again",
    "FAILED_PRECONDITION": "correct what the message names, then run the step again",
    "ABORTED": "it changed meanwhile: run the step again",
    "ALREADY_EXISTS": "it was created meanwhile: run the step again",
    "RESOURCE_EXHAUSTED": "a quota was reached: wait a minute, then run the step again",
    "UNAVAILABLE": _RETRY,
    "INTERNAL": _RETRY,
    "DEADLINE_EXCEEDED": _RETRY,
}
_BAD_INPUT = ("INVALID_ARGUMENT", "OUT_OF_RANGE")


def translate(
    exc: Exception, where: str, api: str, fix: str = "", withhold: Sequence[str] = ()
) -> OpslibError:
    """One OpslibError for a Google error (or a target that does not answer)."""
    if not isinstance(exc, exceptions.GoogleAPICallError):
        return _unreachable(exc, where)
    code = codes.of_error(exc)
    what = f"{code} ({exc.code}): {_message(exc, withhold)}"
    if getattr(exc, "reason", None) == "SERVICE_DISABLED":
        service = (getattr(exc, "metadata", None) or {}).get("service", f"{api}.googleapis.com")
        return OpslibError(where, what, f"enable the API: gcloud services enable {service}")
    if code == "PERMISSION_DENIED":
        role = ROLES.get(api, "the role that grants this call")
        return OpslibError(where, what, fix or f"grant your account {role} on the project")
    if code == "UNAUTHENTICATED":
        return OpslibError(
            where, what, "log in: gcloud auth application-default login (target gcp)"
        )
    violations = _violations(exc)
    if violations:
        what += "\n" + "\n".join(f"  {field}: {text}" for field, text in violations)
    chosen = fix or _GENERIC.get(code, "read Google's message above, then run the step again")
    kind = BadInput if code in _BAD_INPUT else OpslibError
    return kind(where, what, chosen)


def _unreachable(exc: Exception, where: str) -> OpslibError:
    return OpslibError(
        where,
        f"cannot reach the target: {_clip(str(exc))}",
        "on target local, start localcloud (opslib localcloud start --detach); on gcp, "
        "check the network",
    )


def _message(exc: exceptions.GoogleAPICallError, withhold: Sequence[str]) -> str:
    text = str(exc.message or exc)
    if any(value and value in text for value in withhold):
        return "(message withheld: it quoted a secret value)"
    return _clip(text)


def _clip(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _violations(exc: exceptions.GoogleAPICallError) -> list[tuple[str, str]]:
    """The fields Google's BadRequest detail names, with its description of each."""
    found = []
    for detail in getattr(exc, "details", None) or ():
        for item in (detail.get("fieldViolations") or ()) if isinstance(detail, dict) else ():
            found.append((str(item.get("field", "?")), _clip(str(item.get("description", "")))))
    return found


def call(
    fn: Callable[..., T],
    where: str,
    api: str,
    *,
    missing_ok: bool = False,
    fix: str = "",
    **kwargs: Any,
) -> T | None:
    """Call the API; a missing resource is None when `missing_ok`, other errors translated.

    The error is raised outside the `except` block, so Google's original (which may quote the
    request) is neither its cause nor its context.
    """
    try:
        return fn(**kwargs)
    except (exceptions.GoogleAPICallError, OSError) as exc:
        if missing_ok and isinstance(exc, exceptions.NotFound):
            return None
        error = translate(exc, where, api, fix)
    raise error


@contextlib.contextmanager
def google_errors(where: str, api: str, fix: str = "") -> Iterator[None]:
    """Google's errors (and an unreachable target) inside the block, as one OpslibError."""
    try:
        yield
    except (exceptions.GoogleAPICallError, OSError) as exc:
        error = translate(exc, where, api, fix)
    else:
        return
    raise error
