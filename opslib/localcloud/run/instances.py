"""Cloud Run instances: a revision's container command, really running, with its logs captured.

An instance is the image's ENTRYPOINT+CMD (or the container's command/args) started in the
image's folder and Python environment, with PORT, K_SERVICE, K_REVISION, K_CONFIGURATION, the
env vars and the resolved secrets. It is ready when it accepts TCP on PORT (Cloud Run's
default startup probe). stdout/stderr lines become `run.googleapis.com/stdout|stderr`
entries (`container.log_line`). localcloud runs at most one instance per revision. The command
line, environment and log lines are `container`'s, shared with Cloud Run jobs' tasks (`tasks`).

Scaling in, as Cloud Run documents it (`scale_in`):
- "When a revision does not receive any traffic, by default it is scaled in to zero instances"
  (cloud.google.com/run/docs/about-instance-autoscaling), and "Minimum instances are started
  only if the revision is addressable", i.e. it receives a percentage of the traffic or has a
  tag (…/configuring/min-instances; localcloud serves no tag URLs, so only traffic counts). So an
  instance of a revision without traffic stops as soon as no request is in flight on it, min
  instances or not.
- "When you change traffic for revisions, all requests being processed will continue to
  completion. In flight requests won't be dropped" (…/rollouts-rollbacks-traffic-migration): a
  busy one is marked `retired` and stops when its last request ends, which the front's request
  timeout bounds (a timed-out request is answered 504 and no longer counts).
- "Cloud Run removes instances that are not processing requests (idle)" (…/min-instances), with
  no documented delay: a revision that serves traffic keeps its idle instance
  LOCALCLOUD_IDLE_SECONDS (the next request is then a real cold start), forever if its min
  instances are above 0.
- Stopping is SIGTERM ("Cloud Run sends a SIGTERM signal to your container instance before the
  container instance terminates, due to an event like scale down or deleted revision",
  …/samples/cloudrun-sigterm-handler), then SIGKILL after 10 s (the container contract's
  lifecycle section, known here only as quoted by go.googlesource.com/pkgsite-metrics 188c8e1).
gcp-facts.md has no entry on any of this (§ Cloud Monitoring lists the question as open).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from opslib.localcloud.cloud import Cloud, RunnableImage
from opslib.localcloud.run.container import (
    StartFailed,
    command_line,
    container_env,
    log_line,
    platform_env,
    pump,
)

IDLE_SECONDS = float(os.environ.get("LOCALCLOUD_IDLE_SECONDS", "900"))
STARTUP_SECONDS = float(os.environ.get("LOCALCLOUD_STARTUP_SECONDS", "240"))
# A new revision is watched this long after its port opens: gunicorn's master listens before
# its worker imports the app, so an app that crashes on import exits just after the probe.
ROLLOUT_GRACE_SECONDS = float(os.environ.get("LOCALCLOUD_ROLLOUT_GRACE_SECONDS", "1.0"))
PROBE_FAILED = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT={port} environment variable within the allocated timeout. This can happen when "
    "the container port is misconfigured or if the timeout is too short. Logs for this "
    "revision might contain more information."
)


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
    # Its revision lost its traffic while requests were in flight: it stops when the last ends.
    retired: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Instances:
    """Starts, tracks and stops instances; one per revision at most."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.running: dict[str, Instance] = {}
        self.starting: dict[str, asyncio.Future[Instance]] = {}
        # Instances out of service whose process is being stopped (SIGTERM, then SIGKILL).
        self.stopping: dict[asyncio.Task[None], Instance] = {}

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
        image = self.cloud.registry.runnable(revision["_imageDigest"])
        port = free_port()
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
        self.cloud.children.add(process.pid, f"instance of {revision['name'].rsplit('/', 1)[-1]}")
        instance = Instance(revision["name"], process, port, instance_id)
        instance.readers = [
            asyncio.create_task(self._pump(process.stdout, revision, instance, "stdout")),
            asyncio.create_task(self._pump(process.stderr, revision, instance, "stderr")),
        ]
        container_name = container.get("name") or "app"
        grace = ROLLOUT_GRACE_SECONDS if reason == "DEPLOYMENT_ROLLOUT" else 0.0
        try:
            await self._probe(instance, grace)
        except BaseException:  # a failed start, or localcloud stopping meanwhile: no orphan
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

    def _argv(self, image: RunnableImage, container: dict[str, Any]) -> list[str]:
        return command_line(self.cloud, image, container)

    def _env(
        self,
        image: RunnableImage,
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
        self.cloud.children.remove(process.pid)
        await asyncio.gather(*instance.readers, return_exceptions=True)

    def scale_in(self, serving: set[str], keep: set[str], idle: float = IDLE_SECONDS) -> int:
        """Take out of service what no one uses; return how many instances that is.

        An instance of a revision outside `serving` (no traffic) goes as soon as no request is
        in flight on it (a busy one is marked `retired`, and the front releases it once its
        last request has ended: `RunBackend.retire`); one of a serving
        revision after `idle` seconds without requests, unless min instances keep it (`keep`).
        """
        now, stopped = time.monotonic(), 0
        for name, instance in list(self.running.items()):
            instance.retired = name not in serving
            if instance.active:
                continue
            if instance.retired or (name not in keep and now - instance.last_used >= idle):
                self.release(instance)
                stopped += 1
        return stopped

    def release(self, instance: Instance) -> None:
        """Out of service now (the next request to its revision starts another); its process
        is stopped in the background and listed in `stopping` until it has exited."""
        if self.running.get(instance.revision) is not instance:
            return  # already out of service: whoever took it out stops it
        del self.running[instance.revision]
        task = asyncio.get_running_loop().create_task(self._terminate(instance))
        self.stopping[task] = instance
        task.add_done_callback(lambda done: self.stopping.pop(done, None))

    async def stopped(self) -> None:
        """Wait until every released instance's process has exited."""
        while self.stopping:
            await asyncio.gather(*list(self.stopping), return_exceptions=True)

    async def close(self) -> None:
        for instance in list(self.running.values()):
            self.release(instance)
        await self.stopped()
