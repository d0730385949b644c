"""Secret Manager: create secrets, add versions, import a .env file, check a spec's references.

Secret values never leave this module. Changes, DataFrames, errors and logs carry names,
versions, states and the equivalent gcloud command (which reads the value from stdin), never a
value: API errors that could echo one are re-raised as `OpslibError` without it, and the client's
debug log records have their request and response bodies blanked.
"""

from __future__ import annotations

import base64
import logging
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import google_crc32c
import pandas as pd
from google.api_core import exceptions

from opslib.cloud.clients import Clients
from opslib.cloud.errors import translate
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Plan
from opslib.spec import names
from opslib.spec import rules as g
from opslib.spec.model import Spec
from opslib.steps import dotenv

STEP = "secrets"
MAX_PAYLOAD = 64 * 1024  # Secret Manager's payload limit (gcp-facts §4)
ENABLED = "ENABLED"
VERSION_COLUMNS = ["version", "state", "created"]
REF_COLUMNS = ["env", "secret", "version", "state", "ok", "fix"]
_HIDDEN = "(hidden by opslib: may hold a secret value)"
T = TypeVar("T")


# --- secrets and versions -------------------------------------------------------------------


def ensure_secret(clients: Clients, project: str, secret_id: str, dry_run: bool = False) -> Change:
    """Create the secret once (automatic replication): a second run is a no-op, not a 409."""
    _check_id(secret_id)
    client = _client(clients)
    name = secret_name(project, secret_id)
    resource = f"secret {secret_id}"
    if _get(lambda: client.get_secret(name=name), resource) is not None:
        return Change(STEP, resource, "no change")
    command = _create_command(secret_id, project)
    change = Change(STEP, resource, "create", ("replication",), "automatic replication", command)
    if dry_run:
        return change
    try:
        _call(
            lambda: client.create_secret(
                parent=names.project_of(project),
                secret_id=secret_id,
                secret={"replication": {"automatic": {}}},
            ),
            resource,
            expect=(exceptions.Conflict,),
        )
    except exceptions.Conflict:  # created between our read and our write
        return Change(STEP, resource, "no change", detail="created meanwhile")
    return change


def add_version(
    clients: Clients, project: str, secret_id: str, value: str | bytes, dry_run: bool = False
) -> Change:
    """Add a version only if the value differs from the latest one (CRC32C): re-runs add none."""
    _check_id(secret_id)
    data = _payload(secret_id, value)
    crc = google_crc32c.value(data)
    client = _client(clients)
    parent = secret_name(project, secret_id)
    resource = f"secret {secret_id} version"
    latest = _get(lambda: client.get_secret_version(name=f"{parent}/versions/latest"), resource)
    if latest is not None and _state(latest) == ENABLED and _crc(client, latest) == crc:
        detail = f"same value as version {version_number(latest.name)}"
        return Change(STEP, resource, "no change", detail=detail)
    command = _gcloud(["versions", "add", secret_id, "--data-file=-"], project)
    change = Change(STEP, resource, "create", ("payload",), "new version", command)
    if dry_run:
        return change
    added = _call(
        lambda: client.add_secret_version(
            parent=parent, payload={"data": data, "data_crc32c": crc}
        ),
        resource,
        hide=data,
        if_missing=f"create the secret first: {_create_command(secret_id, project)}",
    )
    return replace(change, detail=f"version {version_number(added.name)}")


def list_versions(clients: Clients, project: str, secret_id: str) -> pd.DataFrame:
    """A secret's versions, newest first, to see what exists and what is enabled; no values."""
    _check_id(secret_id)
    client = _client(clients)
    parent = secret_name(project, secret_id)
    found = _call(
        lambda: list(client.list_secret_versions(parent=parent)),
        f"secret {secret_id}",
        if_missing=f"create it: {_create_command(secret_id, project)}",
    )
    rows = [
        {
            "version": version_number(v.name),
            "state": _state(v),
            "created": pd.Timestamp(v.create_time),
        }
        for v in found
    ]
    rows.sort(key=lambda row: row["version"], reverse=True)
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def secret_name(project: str, secret_id: str) -> str:
    return names.secret(project, secret_id)


def version_number(name: str) -> int:
    """The N of `.../versions/N` (Google names versions by number from 1)."""
    return int(name.rsplit("/", 1)[-1])


def _crc(client: Any, version: Any) -> int:
    """CRC32C of a version's payload, so values are compared without being kept."""
    answer = _call(
        lambda: client.access_secret_version(name=version.name), f"secret version {version.name}"
    )
    payload = answer.payload
    return payload.data_crc32c if "data_crc32c" in payload else google_crc32c.value(payload.data)


def _payload(secret_id: str, value: str | bytes) -> bytes:
    """The bytes to store; errors name the secret and the size, never the value."""
    where = f"secret {secret_id}"
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    else:
        raise BadInput(where, f"a secret value is str or bytes, not {type(value).__name__}")
    if not data:
        raise BadInput(where, "the value is empty", "give the secret a value (or leave it out)")
    if len(data) > MAX_PAYLOAD:
        raise BadInput(
            where,
            f"the value is {len(data)} bytes; Secret Manager holds at most {MAX_PAYLOAD}",
            "store a smaller value (e.g. a key, not a file of keys)",
        )
    return data


# --- .env files ---------------------------------------------------------------------------


def import_env(
    clients: Clients,
    project: str,
    path: str | Path,
    keys: list[str] | None = None,
    dry_run: bool = False,
) -> Plan:
    """Move a .env file's values into Secret Manager, so they need not be pasted anywhere."""
    path = Path(path)
    entries = dotenv.select(path, dotenv.parse_env(path), keys)
    plan = Plan()
    for entry in entries:
        secret_id = dotenv.secret_id_for(entry.key)
        plan.add(ensure_secret(clients, project, secret_id, dry_run=dry_run))
        plan.add(add_version(clients, project, secret_id, entry.value, dry_run=dry_run))
    return plan


# --- references in a spec -----------------------------------------------------------------


def check_refs(clients: Clients, spec: Spec) -> pd.DataFrame:
    """Check each spec.secrets reference is ENABLED before a deploy that Cloud Run would fail."""
    client = _client(clients)
    rows = [_check_ref(client, spec.project, env, ref) for env, ref in spec.secrets.items()]
    return pd.DataFrame(rows, columns=REF_COLUMNS)


def _check_ref(client: Any, project: str, env: str, ref: str) -> dict[str, Any]:
    """One row: the reference's state (or why it has none) and how to fix it."""
    name, version = g.check_secret_ref(ref)
    secret_id = name.rsplit("/", 1)[-1]
    parent = name if name.startswith("projects/") else secret_name(project, secret_id)
    owner = parent.split("/")[1]
    where = f"secret {secret_id}"
    # Over REST a 403 is `Forbidden` (PermissionDenied is its gRPC-only subclass).
    expect = (exceptions.NotFound, exceptions.Forbidden)
    try:
        found = _call(
            lambda: client.get_secret_version(name=f"{parent}/versions/{version}"), where, expect
        )
        state = _state(found)
    except exceptions.Forbidden:
        state = "PERMISSION_DENIED"
    except exceptions.NotFound:
        exists = _get(lambda: client.get_secret(name=parent), where) is not None
        state = "VERSION_NOT_FOUND" if exists else "SECRET_NOT_FOUND"
    row = {"env": env, "secret": name, "version": version, "state": state}
    return {**row, "ok": state == ENABLED, "fix": _ref_fix(state, secret_id, version, owner)}


def _ref_fix(state: str, secret_id: str, version: str, project: str) -> str:
    """What to run so the reference works."""
    add = _gcloud(["versions", "add", secret_id, "--data-file=-"], project)
    create = _create_command(secret_id, project)
    fixes = {
        ENABLED: "",
        "SECRET_NOT_FOUND": f"create it ({create}), then add a value ({add})",
        "VERSION_NOT_FOUND": f"add a value ({add}) or reference an existing version",
        "DISABLED": _gcloud(["versions", "enable", version, f"--secret={secret_id}"], project)
        + " (or reference another version)",
        "DESTROYED": f"add a new value ({add}) and reference it",
        "PERMISSION_DENIED": "grant your account roles/secretmanager.viewer on the secret",
    }
    return fixes.get(state, "reference an ENABLED version")


# --- client plumbing ----------------------------------------------------------------------


class _HidePayloads(logging.Filter):
    """Blank request and response bodies in the client's debug records: they carry values."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("httpRequest", "httpResponse", "request", "response"):
            body = getattr(record, attr, None)
            if isinstance(body, dict) and "payload" in body:
                setattr(record, attr, {**body, "payload": _HIDDEN})
        return True


_FILTER = _HidePayloads()


def _client(clients: Clients) -> Any:
    """The Secret Manager client, its loggers made unable to print a value."""
    client = clients.secrets
    for owner in (client, client.transport):
        logger = logging.getLogger(type(owner).__module__)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return client


def _check_id(secret_id: str) -> None:
    """Google's secret id rule, checked before any call."""
    if not isinstance(secret_id, str) or not g.SECRET_ID.fullmatch(secret_id):
        raise BadInput(
            "secret id",
            f"{secret_id!r} is not 1-255 letters, digits, '_' or '-'",
            "use an id like fx-api-key",
        )


def _gcloud(words: list[str], project: str) -> str:
    return shlex.join(["gcloud", "secrets", *words, f"--project={project}"])


def _create_command(secret_id: str, project: str) -> str:
    return _gcloud(["create", secret_id, "--replication-policy=automatic"], project)


def _state(version: Any) -> str:
    state = version.state
    return getattr(state, "name", str(state))


def _get(read: Callable[[], T], where: str) -> T | None:
    """A read that answers None for a missing resource."""
    try:
        return _call(read, where, expect=(exceptions.NotFound,))
    except exceptions.NotFound:
        return None


def _call(
    request: Callable[[], T],
    where: str,
    expect: tuple[type[Exception], ...] = (),
    hide: bytes = b"",
    if_missing: str = "",
) -> T:
    """Run one API call; errors other than `expect` become OpslibError without any value.

    The error is raised outside the `except` block, so the original (which may quote the
    request) is neither its cause nor its context.
    """
    try:
        return request()
    except expect:
        raise
    except (exceptions.GoogleAPIError, OSError) as exc:
        error = _api_error(exc, where, hide, if_missing)
    raise error


def _api_error(exc: Exception, where: str, hide: bytes, if_missing: str) -> OpslibError:
    """Google's answer as opslib's error (cloud.errors), withholding a message that quotes the
    value in any of its forms."""
    withhold = _forms(hide) if hide else []
    fix = if_missing if if_missing and getattr(exc, "code", None) == 404 else ""
    return translate(exc, f"Secret Manager: {where}", "secretmanager", fix, withhold)


def _forms(data: bytes) -> list[str]:
    """The ways a value can appear in an error text: itself, base64, URL-safe base64."""
    forms = [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()]
    forms += [form.rstrip("=") for form in forms]
    forms += [data.decode("utf-8", errors="replace"), repr(data)[2:-1]]
    return [form for form in forms if form]
