"""Cloud Run job executions, really running: each task attempt is a process from the built image.

The rules:
- An execution runs its `taskCount` tasks, at most `parallelism` at once (all of them when 0).
- A task attempt is the container's `command` + `args` (else the image's ENTRYPOINT + CMD),
  started in the image's folder and venv as service instances are (`container`), with the
  container's env and secrets (read once, when the execution starts), the metadata-server
  variables, and CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX,
  CLOUD_RUN_TASK_ATTEMPT (from 0) and CLOUD_RUN_TASK_COUNT.
- Exit 0 is success. Any other exit, or running past the task `timeout` (real seconds: the
  process group gets SIGTERM, then SIGKILL after KILL_GRACE seconds), fails the attempt; a
  failed task is retried up to `maxRetries` times (in the same slot). The execution succeeds
  when every task does and fails when one runs out of retries, once every task has ended.
- Cancelling stops running attempts the same way and never starts pending tasks.
- Each stdout/stderr line is a `run.googleapis.com/stdout|stderr` entry on resource
  `cloud_run_job` {project_id, job_name, location}, labelled with the execution, task index and
  attempt, parsed as service logs are (a JSON line becomes jsonPayload with its severity).
Timestamps come from localcloud's clock; the backend (`jobs_backend`) records every state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from dataclasses import dataclass
from typing import Any

from opslib.localcloud.clock import duration_seconds
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.run.container import (
    StartFailed,
    command_line,
    container_env,
    log_line,
    platform_env,
    pump,
)

KILL_GRACE = float(os.environ.get("LOCALCLOUD_JOB_KILL_GRACE_SECONDS", "10"))
EXITED = "The container exited with an error."
TIMED_OUT = "The configured timeout was reached."
CANCELLED = "The task was cancelled."
EXECUTION_LABEL = "run.googleapis.com/execution_name"


class Unavailable(Exception):
    """The execution cannot start: its image or a secret is missing (reason, message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Launch:
    """What every task of one execution runs: the command, where, and the shared env."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    resource: dict[str, Any]
    log_prefix: str


@dataclass
class Outcome:
    """How one attempt ended: an exit code, or the signal that stopped it, and why."""

    exit_code: int
    signal: int = 0
    message: str = ""
    code: int = 0  # google.rpc code of the attempt's status (0 = OK)


class Runner:
    """Runs executions as asyncio tasks; `backend` (jobs_backend.JobsBackend) records them."""

    def __init__(self, cloud: Cloud, backend: Any) -> None:
        self.cloud, self.backend = cloud, backend
        self.running: dict[str, asyncio.Task[None]] = {}  # execution name -> its coroutine
        self.stopping: dict[str, str] = {}  # execution name -> why it is being stopped

    def start(self, execution: dict[str, Any]) -> None:
        """Run an execution in the background (`:run` answers before it ends)."""
        name = execution["name"]
        task = asyncio.create_task(self._execute(name))
        self.running[name] = task
        task.add_done_callback(lambda _: self._forget(name))

    def _forget(self, name: str) -> None:
        self.running.pop(name, None)
        self.stopping.pop(name, None)

    async def stop(self, name: str, why: str) -> None:
        """Stop an execution's attempts (SIGTERM, then SIGKILL) and wait until it has ended."""
        task = self.running.get(name)
        if task is None:
            return
        self.stopping[name] = why
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        execution = self.backend.data["executions"].get(name)
        if execution is not None and not execution.get("completionTime"):
            # Cancelled before its coroutine ran a line: nothing else records the end.
            self.backend.cancelled(execution, self.backend.tasks_of(name), why)

    async def close(self, why: str) -> None:
        """Stop every execution (at shutdown or reset), leaving no process behind."""
        await asyncio.gather(*(self.stop(n, why) for n in list(self.running)))

    async def _execute(self, name: str) -> None:
        execution = self.backend.execution(name)
        tasks = self.backend.tasks_of(name)
        try:
            launch = self._prepare(execution)
        except Unavailable as exc:
            self.backend.unavailable(execution, exc.reason, exc.message)
            return
        self.backend.started(execution)
        slots = asyncio.Semaphore(execution.get("parallelism") or len(tasks))
        try:
            await asyncio.gather(*(self._task(launch, execution, t, slots) for t in tasks))
        except asyncio.CancelledError:
            self.backend.cancelled(execution, tasks, self.stopping.get(name, "Cancelled."))
            return
        self.backend.finished(execution, tasks)

    def _prepare(self, execution: dict[str, Any]) -> Launch:
        """Resolve the image and the secrets once, as Cloud Run does when provisioning."""
        container = execution["template"]["containers"][0]
        digest = self.cloud.registry.resolve_image(container["image"])
        if digest is None:
            raise Unavailable("CONTAINER_MISSING", f"Image '{container['image']}' not found.")
        image = self.cloud.registry.runnable(digest)
        _, project, _, location, _, job_id, _, short = execution["name"].split("/")
        try:
            env = container_env(self.cloud, image, container, project, "Execution")
        except StartFailed as exc:
            raise Unavailable("SECRETS_ACCESS_CHECK_FAILED", str(exc)) from None
        env.update(platform_env(self.cloud, project))
        env.update(
            {
                "CLOUD_RUN_JOB": job_id,
                "CLOUD_RUN_EXECUTION": short,
                "CLOUD_RUN_TASK_COUNT": str(execution["taskCount"]),
            }
        )
        labels = {"project_id": project, "job_name": job_id, "location": location}
        return Launch(
            command_line(self.cloud, image, container),
            str(image.root / image.workdir.lstrip("/")),
            env,
            {"type": "cloud_run_job", "labels": labels},
            f"projects/{project}/logs/run.googleapis.com%2F",
        )

    async def _task(
        self,
        launch: Launch,
        execution: dict[str, Any],
        task: dict[str, Any],
        slots: asyncio.Semaphore,
    ) -> None:
        async with slots:
            timeout = duration_seconds(task["timeout"], 600.0)
            for attempt in range(int(task["maxRetries"]) + 1):
                if attempt:
                    task["retried"] = attempt
                self.backend.attempt_started(execution, task)
                outcome = await self._attempt(launch, task, attempt, timeout)
                self.backend.attempt_ended(execution, task, outcome)
                if outcome.code == 0:
                    return

    async def _attempt(
        self, launch: Launch, task: dict[str, Any], attempt: int, timeout: float
    ) -> Outcome:
        env = {
            **launch.env,
            "CLOUD_RUN_TASK_INDEX": str(task["index"]),
            "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                cwd=launch.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return Outcome(127, message=f"{EXITED} {exc}", code=13)
        self.cloud.children.add(process.pid, f"task {task['index']} of {task['execution']}")
        labels = self._labels(task, attempt)
        readers = [
            asyncio.create_task(self._pump(process.stdout, launch, labels, "stdout")),
            asyncio.create_task(self._pump(process.stderr, launch, labels, "stderr")),
        ]
        try:
            return await self._wait(process, timeout)
        finally:
            await _terminate(process)  # also when cancelled: no process outlives its attempt
            self.cloud.children.remove(process.pid)
            await asyncio.gather(*readers, return_exceptions=True)

    async def _wait(self, process: asyncio.subprocess.Process, timeout: float) -> Outcome:
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            await _terminate(process)
            return Outcome(0, signal=-(process.returncode or 0), message=TIMED_OUT, code=4)
        if code == 0:
            return Outcome(0)
        if code < 0:
            return Outcome(0, signal=-code, message=EXITED, code=13)
        return Outcome(code, message=EXITED, code=13)

    def _labels(self, task: dict[str, Any], attempt: int) -> dict[str, str]:
        return {
            "instanceId": uuid.uuid4().hex * 2,
            EXECUTION_LABEL: task["execution"],
            "run.googleapis.com/task_index": str(task["index"]),
            "run.googleapis.com/task_attempt": str(attempt),
        }

    async def _pump(
        self,
        stream: asyncio.StreamReader | None,
        launch: Launch,
        labels: dict[str, str],
        log: str,
    ) -> None:
        def write(text: str) -> None:
            entry = {
                "logName": launch.log_prefix + log,
                "resource": launch.resource,
                "labels": dict(labels),
            }
            self.cloud.logs.write(log_line(self.cloud, entry, text))

        await pump(stream, write)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the attempt's process group, SIGKILL it after KILL_GRACE seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
