"""A real localcloud process for the tests that need one, started once per test session."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from opslib.localcloud import control

PROJECT = "demo-project"
REGION = "asia-northeast3"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
_SERVER: dict[str, object] = {}


def server() -> control.Running:
    """The session's localcloud (started on first use, stopped at exit)."""
    if "running" not in _SERVER:
        state = Path(tempfile.mkdtemp(prefix="localcloud-test-"))
        _SERVER["state"] = state
        _SERVER["running"] = control.start(state, port=0)
        atexit.register(_stop)
    return _SERVER["running"]  # type: ignore[return-value]


def _stop() -> None:
    state = _SERVER.get("state")
    if isinstance(state, Path):
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)


def client_kwargs() -> dict[str, object]:
    """What the official REST clients need to talk to localcloud."""
    return {
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=server().url),
        "credentials": AnonymousCredentials(),
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(path: str, body: dict | None = None, method: str | None = None) -> tuple[int, dict]:
    """A raw REST call to localcloud (for wire details the clients hide)."""
    data = None if body is None else json.dumps(body).encode()
    request = Request(
        server().url + path,
        data=data,
        method=method or ("POST" if data else "GET"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except Exception as exc:  # HTTPError carries the JSON error body
        status = getattr(exc, "code", None)
        if status is None:
            raise
        return status, json.loads(exc.read() or b"{}")


def advance(seconds: float) -> dict:
    return call("/_localcloud/clock:advance", {"seconds": seconds})[1]
