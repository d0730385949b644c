"""What a Cloud Run container runs with, for service instances and job tasks alike.

Both start the container the same way from an image Cloud Build built: the command line (the
container's `command` + `args`, else the image's ENTRYPOINT + CMD, run from the image's venv),
an environment built from scratch (the image's ENV, the container's env with `secretKeyRef`
values read from Secret Manager, the metadata-server variables), and their stdout/stderr turned
into log entries as Cloud Run does: a plain line is `textPayload` with severity DEFAULT, a JSON
object is `jsonPayload` with `severity` and the `logging.googleapis.com/*` fields lifted out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from opslib.localcloud.clock import parse_rfc3339, rfc3339
from opslib.localcloud.cloud import Cloud, RunnableImage

LIFTED = {
    "logging.googleapis.com/sourceLocation": "sourceLocation",
    "logging.googleapis.com/labels": "labels",
    "logging.googleapis.com/insertId": "insertId",
    "logging.googleapis.com/operation": "operation",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "httpRequest": "httpRequest",
}


class StartFailed(Exception):
    """The container did not listen on PORT in time, or exited; message as Cloud Run words it."""


async def pump(stream: asyncio.StreamReader | None, write: Callable[[str], None]) -> None:
    """Hand each non-empty line a container writes to `write`, until the stream ends."""
    assert stream is not None
    while line := await stream.readline():
        text = line.decode("utf-8", errors="replace").rstrip("\n")
        if text:
            write(text)


def command_line(cloud: Cloud, image: RunnableImage, container: dict[str, Any]) -> list[str]:
    """The container's command + args, else the image's ENTRYPOINT + CMD, run from its venv."""
    command = container.get("command") or image.entrypoint
    args = container.get("args") if container.get("command") or container.get("args") else image.cmd
    argv = [*command, *(args or [])] if command else list(args or [])
    pyenv_bin = image.bin
    if argv and "/" not in argv[0] and (pyenv_bin / argv[0]).exists():
        argv[0] = str(pyenv_bin / argv[0])
    if argv and argv[0] in ("python", "python3"):
        argv[0] = str(pyenv_bin / "python")
    return argv


def container_env(
    cloud: Cloud,
    image: RunnableImage,
    container: dict[str, Any],
    project: str,
    who: str = "Revision",
) -> dict[str, str]:
    """A fresh environment: PATH to the image's venv, the image's ENV, the container's env."""
    pyenv_bin = image.bin
    env = {
        "PATH": f"{pyenv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        **image.env,
    }
    for var in container.get("env", []):
        source = (var.get("valueSource") or {}).get("secretKeyRef")
        env[var["name"]] = (
            secret_value(cloud, project, source, who) if source else var.get("value", "")
        )
    return env


def platform_env(cloud: Cloud, project: str) -> dict[str, str]:
    """Where a container on Cloud Run finds its identity and Google's APIs: the metadata
    server (GCE_METADATA_HOST is google-auth's own override) and the API endpoints."""
    return {
        "GCE_METADATA_HOST": f"127.0.0.1:{cloud.port}",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER": f"{cloud.base_url}/",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN": f"{cloud.base_url}/",
        "STORAGE_EMULATOR_HOST": cloud.base_url,  # GCS JSON API (google-cloud-storage's)
        "GOOGLE_CLOUD_PROJECT": project,
    }


def secret_value(cloud: Cloud, project: str, ref: dict[str, Any], who: str = "Revision") -> str:
    """A secretKeyRef's value from Secret Manager; StartFailed as Cloud Run words it."""
    secret = ref["secret"].split("/")[-1]
    owner = ref["secret"].split("/")[1] if ref["secret"].startswith("projects/") else project
    try:
        data = cloud.secrets.access(owner, secret, ref.get("version", "latest"))
    except Exception as exc:
        raise StartFailed(
            f"SECRETS_ACCESS_CHECK_FAILED: {who} could not access secret {ref['secret']} "
            f"version {ref.get('version', 'latest')}: {getattr(exc, 'message', exc)}"
        ) from None
    return data.decode("utf-8", errors="replace")


def log_line(cloud: Cloud, entry: dict[str, Any], text: str) -> dict[str, Any]:
    """`entry` with one stdout/stderr line as Cloud Run logs it: a plain line is textPayload
    (severity DEFAULT); a JSON object is jsonPayload with severity and special fields lifted."""
    payload = _json_object(text)
    if payload is None:
        entry["textPayload"], entry["severity"] = text, "DEFAULT"
        return entry
    entry["severity"] = str(payload.pop("severity", "DEFAULT")).upper()
    for key, target in LIFTED.items():
        if key in payload:
            value = payload.pop(key)
            labels = entry.get("labels", {})
            entry[target] = {**labels, **value} if target == "labels" else value
    for key in ("time", "timestamp"):
        if isinstance(payload.get(key), str):
            entry["timestamp"] = _on_clock(cloud, payload.pop(key))
    entry["jsonPayload"] = payload
    return entry


def _on_clock(cloud: Cloud, stamp: str) -> str:
    """A container's own timestamp, moved onto localcloud's clock (which tests advance)."""
    if not cloud.clock.offset:
        return stamp
    try:
        when = parse_rfc3339(stamp)
    except ValueError:
        return stamp
    return rfc3339(when + timedelta(seconds=cloud.clock.offset))


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
