"""A real localcloud process for the tests that need one, started once per test session."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from opslib.cloud.clients import Clients
from opslib.cloud.session import Session
from opslib.localcloud import control
from opslib.spec.model import Spec
from opslib.spec.project import project_root

PROJECT = "demo-project"
REGION = "asia-northeast3"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
_SERVER: dict[str, object] = {}
_LOCK = threading.Lock()


def server() -> control.Running:
    """The session's localcloud: started once on first use (threads may race), stopped at exit."""
    with _LOCK:
        return _server()


def _server() -> control.Running:
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


def entries(filter_text: str) -> list[dict]:
    """The project's log entries matching a Logging filter (one page of up to 1,000)."""
    status, body = call(
        "/v2/entries:list",
        {"resourceNames": [f"projects/{PROJECT}"], "filter": filter_text, "pageSize": 1000},
    )
    assert status == 200, body
    return body.get("entries", [])


def advance(seconds: float) -> dict:
    return call("/_localcloud/clock:advance", {"seconds": seconds})[1]


def upload_source(folder: Path, bucket_name: str = f"{PROJECT}_cloudbuild") -> tuple[str, str]:
    """Tar a service folder into gs://PROJECT_cloudbuild/source/... as gcloud builds submit does."""
    import io
    import tarfile

    from google.cloud import storage

    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server().url},
    )
    bucket = client.bucket(bucket_name)
    if not bucket.exists():
        bucket = client.create_bucket(bucket_name)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        archive.add(folder, arcname=".", filter=lambda t: None if "__pycache__" in t.name else t)
    name = f"source/{uuid.uuid4().hex}.tgz"
    bucket.blob(name).upload_from_string(data.getvalue(), content_type="application/gzip")
    return bucket_name, name


def build(folder: Path, image: str):
    """Cloud Build of `folder` (docker build + push of `image`); returns the finished Build."""
    from google.cloud.devtools import cloudbuild_v1

    bucket, obj = upload_source(folder)
    client = cloudbuild_v1.CloudBuildClient(**client_kwargs())
    operation = client.create_build(
        project_id=PROJECT,
        build={
            "source": {"storage_source": {"bucket": bucket, "object_": obj}},
            "steps": [
                {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]}
            ],
            "images": [image],
        },
    )
    return operation.result(timeout=180)


def image_name(service: str, tag: str) -> str:
    return f"{REGION}-docker.pkg.dev/{PROJECT}/opslib/{service}:{tag}"


def token(audience: str, email: str) -> str:
    return call("/_localcloud/token", {"audience": audience, "email": email})[1]["token"]


def clients(project: str = PROJECT) -> Clients:
    """opslib's clients for the session's localcloud (what a Session on it would hold)."""
    return Clients("local", project, server().url)


def session(spec: Spec, folder: Path, params: Path | None = None) -> Session:
    """A session for an in-memory spec and its service folder, on the tests' localcloud (found
    through its state directory, as any session finds its project's)."""
    server()
    root = project_root(params) if params is not None else folder.parent
    path = params or root / "parameters" / f"{spec.job.name}.yaml"
    state = _SERVER["state"]
    assert isinstance(state, Path)
    return Session(spec, path, root, folder, state)
