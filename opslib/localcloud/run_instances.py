"""Cloud Run instances: a revision's container command, really running, with its logs captured.

An instance is the image's ENTRYPOINT+CMD (or the container's command/args) started in the
image's folder and Python environment, with PORT, K_SERVICE, K_REVISION, K_CONFIGURATION, the
env vars and the resolved secrets. It is ready when it accepts TCP on PORT (Cloud Run's
default startup probe). stdout/stderr lines become `run.googleapis.com/stdout|stderr`
entries: a JSON line becomes jsonPayload with its severity, a plain line textPayload.
localcloud runs at most one instance per revision; min instances 0 means the instance stops
after LOCALCLOUD_IDLE_SECONDS without requests and the next request is a real cold start.
The module functions (command line, environment, secrets, output pump, log lines) are shared
with Cloud Run jobs' tasks (jobs_runner), which run from the same images the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from opslib.localcloud import imagebuild
from opslib.localcloud.clock import parse_rfc3339, rfc3339
from opslib.localcloud.cloud import Cloud

IDLE_SECONDS = float(os.environ.get("LOCALCLOUD_IDLE_SECONDS", "900"))
STARTUP_SECONDS = float(os.environ.get("LOCALCLOUD_STARTUP_SECONDS", "240"))
# A new revision is watched this long after its port opens: gunicorn's master listens before
# its worker imports the app, so an app that crashes on import exits just after the probe.
ROLLOUT_GRACE_SECONDS = float(os.environ.get("LOCALCLOUD_ROLLOUT_GRACE_SECONDS", "1.0"))
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
PROBE_FAILED = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT={port} environment variable within the allocated timeout. This can happen when "
    "the container port is misconfigured or if the timeout is too short. Logs for this "
    "revision might contain more information."
)


class StartFailed(Exception):
    """The container did not listen on PORT in time, or exited; message as Cloud Run words it."""


@dataclass
class Instance:
    revision: str
    process: asyncio.subprocess.Process
    port: int
    instance_id: str
    started: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    active: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instances:
    """Starts, tracks and stops instances; one per revision at most."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.running: dict[str, Instance] = {}
        self.starting: dict[str, asyncio.Future[Instance]] = {}
        self.reaper: asyncio.Task[None] | None = None

    async def ensure(self, revision: dict[str, Any]) -> tuple[Instance, bool]:
        """The revision's instance, started if needed; True when this call cold-started it."""
        name = revision["name"]
        if name in self.running and self.running[name].process.returncode is None:
            return self.running[name], False
        if name in self.starting:
            return await asyncio.shield(self.starting[name]), False
        future: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self.starting[name] = future
        try:
            instance = await self._start(revision, "AUTOSCALING")
            future.set_result(instance)
            return instance, True
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self.starting.pop(name, None)

    async def start(self, revision: dict[str, Any]) -> Instance:
        """Start for a deploy (Cloud Run checks every new revision starts)."""
        await self.stop(revision["name"])
        return await self._start(revision, "DEPLOYMENT_ROLLOUT")

    async def _start(self, revision: dict[str, Any], reason: str) -> Instance:
        container = revision["containers"][0]
        image = imagebuild.load(self.cloud.services["cloudbuild"].images, revision["_imageDigest"])
        port = _free_port()
        argv = self._argv(image, container)
        env = self._env(image, revision, container, port, argv)
        cwd = image.root / image.workdir.lstrip("/")
        instance_id = uuid.uuid4().hex * 2
        self._system(
            revision,
            f"Starting new instance. Reason: {reason} - Instance started "
            "due to configured scaling factors or no existing capacity for current traffic.",
            instance_id,
        )
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        instance = Instance(revision["name"], process, port, instance_id)
        instance.readers = [
            asyncio.create_task(self._pump(process.stdout, revision, instance, "stdout")),
            asyncio.create_task(self._pump(process.stderr, revision, instance, "stderr")),
        ]
        container_name = container.get("name") or "app"
        grace = ROLLOUT_GRACE_SECONDS if reason == "DEPLOYMENT_ROLLOUT" else 0.0
        try:
            await self._probe(instance, grace)
        except StartFailed:
            await self._terminate(instance)
            raise
        self._system(
            revision,
            "Default STARTUP TCP probe succeeded after 1 attempt for container "
            f'"{container_name}" on port {port}.',
            instance_id,
        )
        self.running[revision["name"]] = instance
        return instance

    def _argv(self, image: imagebuild.Image, container: dict[str, Any]) -> list[str]:
        return command_line(self.cloud, image, container)

    def _env(
        self,
        image: imagebuild.Image,
        revision: dict[str, Any],
        container: dict[str, Any],
        port: int,
        argv: list[str],
    ) -> dict[str, str]:
        service = revision["service"].rsplit("/", 1)[-1]
        project = revision["name"].split("/")[1]
        env = container_env(self.cloud, image, container, project)
        env.update(
            {
                "PORT": str(port),
                "K_SERVICE": service,
                "K_REVISION": revision["name"].rsplit("/", 1)[-1],
                "K_CONFIGURATION": service,
            }
        )
        env.update(platform_env(self.cloud, project))
        if argv and os.path.basename(argv[0]) == "gunicorn":
            # Cloud Run's containers bind 0.0.0.0; localcloud keeps them on loopback.
            env["GUNICORN_CMD_ARGS"] = f"--bind=127.0.0.1:{port} " + env.get(
                "GUNICORN_CMD_ARGS", ""
            )
        return env

    async def _probe(self, instance: Instance, grace: float) -> None:
        """Cloud Run's default TCP startup probe, then `grace` seconds of staying alive."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            await self._alive(instance)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", instance.port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
        else:
            raise StartFailed(PROBE_FAILED.format(port=instance.port))
        until = time.monotonic() + grace
        while time.monotonic() < until:
            await asyncio.sleep(0.02)
            await self._alive(instance)

    async def _alive(self, instance: Instance) -> None:
        if instance.process.returncode is not None:
            await asyncio.gather(*instance.readers, return_exceptions=True)
            raise StartFailed(
                PROBE_FAILED.format(port=instance.port)
                + f" Container called exit({instance.process.returncode})."
            )

    async def _pump(
        self,
        stream: asyncio.StreamReader | None,
        revision: dict[str, Any],
        instance: Instance,
        log: str,
    ) -> None:
        def write(text: str) -> None:
            self.cloud.logs.write(self._entry(revision, instance.instance_id, log, text))

        await pump(stream, write)

    def _resource(self, revision: dict[str, Any]) -> dict[str, Any]:
        _, project, _, location, _, service, _, name = revision["name"].split("/")
        return {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": project,
                "service_name": service,
                "revision_name": name,
                "location": location,
                "configuration_name": service,
            },
        }

    def _entry(
        self, revision: dict[str, Any], instance_id: str, log: str, text: str
    ) -> dict[str, Any]:
        project = revision["name"].split("/")[1]
        entry: dict[str, Any] = {
            "logName": f"projects/{project}/logs/run.googleapis.com%2F{log}",
            "resource": self._resource(revision),
            "labels": {"instanceId": instance_id},
        }
        return log_line(self.cloud, entry, text)

    def _system(self, revision: dict[str, Any], text: str, instance_id: str) -> None:
        project = revision["name"].split("/")[1]
        self.cloud.logs.write(
            {
                "logName": f"projects/{project}/logs/run.googleapis.com%2Fvarlog%2Fsystem",
                "resource": self._resource(revision),
                "labels": {"instanceId": instance_id},
                "textPayload": text,
                "severity": "INFO",
            }
        )

    async def stop(self, revision_name: str) -> None:
        instance = self.running.pop(revision_name, None)
        if instance:
            await self._terminate(instance)

    async def _terminate(self, instance: Instance) -> None:
        process = instance.process
        if process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 10)
            except (ProcessLookupError, TimeoutError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await asyncio.gather(*instance.readers, return_exceptions=True)

    async def reap(self, keep: set[str], idle: float = IDLE_SECONDS) -> int:
        """Stop instances idle for `idle` seconds, except revisions in `keep` (min instances)."""
        now, stopped = time.monotonic(), 0
        for name, instance in list(self.running.items()):
            if name in keep or instance.active or now - instance.last_used < idle:
                continue
            await self.stop(name)
            stopped += 1
        return stopped

    async def close(self) -> None:
        for name in list(self.running):
            await self.stop(name)


async def pump(stream: asyncio.StreamReader | None, write: Callable[[str], None]) -> None:
    """Hand each non-empty line a container writes to `write`, until the stream ends."""
    assert stream is not None
    while line := await stream.readline():
        text = line.decode("utf-8", errors="replace").rstrip("\n")
        if text:
            write(text)


def command_line(cloud: Cloud, image: imagebuild.Image, container: dict[str, Any]) -> list[str]:
    """The container's command + args, else the image's ENTRYPOINT + CMD, run from its venv."""
    command = container.get("command") or image.entrypoint
    args = container.get("args") if container.get("command") or container.get("args") else image.cmd
    argv = [*command, *(args or [])] if command else list(args or [])
    pyenv_bin = cloud.services["cloudbuild"].images / "envs" / image.pyenv / "bin"
    if argv and "/" not in argv[0] and (pyenv_bin / argv[0]).exists():
        argv[0] = str(pyenv_bin / argv[0])
    if argv and argv[0] in ("python", "python3"):
        argv[0] = str(pyenv_bin / "python")
    return argv


def container_env(
    cloud: Cloud,
    image: imagebuild.Image,
    container: dict[str, Any],
    project: str,
    who: str = "Revision",
) -> dict[str, str]:
    """A fresh environment: PATH to the image's venv, the image's ENV, the container's env."""
    pyenv_bin = cloud.services["cloudbuild"].images / "envs" / image.pyenv / "bin"
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
        data = cloud.services["secretmanager"].access(owner, secret, ref.get("version", "latest"))
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
