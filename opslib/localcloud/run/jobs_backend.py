"""Cloud Run v2 jobs' backend: jobs, executions and tasks in the state store, and their LROs.

The rules:
- Create and update answer an unfinished Operation whose metadata is the Job; it finishes at
  once with the Job, or with FAILED_PRECONDITION `Image '…' not found.` when localcloud has not
  built the image (the job then stays, with a failed terminal condition).
- `:run` answers an unfinished Operation whose metadata is the Execution, refreshed at every
  change; it finishes when the execution does: with the Execution as `response` when it
  succeeded or was cancelled, with an `error` (the failed task's code and Cloud Run's message)
  when a task ran out of retries.
- Operations live with the services' ones (backend), so one `operations.get` serves both.
- An execution left unfinished by a previous localcloud process (stopped or killed) is marked
  cancelled when localcloud starts again; finished executions and their tasks are kept.
- Who may call `:run` is jobs_iam's business; names and shapes are jobs_model's and
  executions_model's.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from opslib.localcloud import resources
from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import parse_rfc3339, rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import RPC_CODE, ApiError
from opslib.localcloud.run import executions as x
from opslib.localcloud.run import jobs as m
from opslib.localcloud.run.tasks import CANCELLED, Outcome, Runner

TYPE = "type.googleapis.com/google.cloud.run.v2."
INTERRUPTED = "localcloud stopped while the execution ran."


def view(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as the API returns it (localcloud's own `_` keys left out)."""
    return {k: v for k, v in resource.items() if not k.startswith("_")}


class JobsBackend(CollectionBackend):
    """Jobs, executions and tasks keyed by full name; `runner` runs the executions."""

    COLLECTION = "runjobs"
    # Jobs, executions and watchers by name; tasks by execution.
    MAPS = ("jobs", "executions", "tasks", "watchers")

    def __init__(self, cloud: Cloud, run: Any) -> None:
        self.run = run
        super().__init__(cloud)
        self.runner = Runner(cloud, self)
        self.background: set[asyncio.Task[None]] = set()
        self._recover()

    def now(self) -> str:
        return rfc3339(self.cloud.clock.now())

    def save(self) -> None:
        super().save()
        self.run.save()  # the operations

    def job(self, name: str) -> dict[str, Any]:
        return resources.found(self.data["jobs"], name)

    def execution(self, name: str) -> dict[str, Any]:
        return resources.found(self.data["executions"], name)

    def task(self, name: str) -> dict[str, Any]:
        for task in self.tasks_of(name.split("/tasks/")[0]):
            if task["name"] == name:
                return task
        raise resources.not_found(name)

    def tasks_of(self, execution: str) -> list[dict[str, Any]]:
        """An execution's tasks by index (kept per execution: every change reads them)."""
        return self.data["tasks"].get(execution, [])

    def executions_of(self, job: str) -> list[dict[str, Any]]:
        prefix = job + "/executions/"
        found = [e for n, e in self.data["executions"].items() if n.startswith(prefix)]
        return sorted(found, key=lambda e: (e["createTime"], e["name"]), reverse=True)

    # Operations -------------------------------------------------------------------------

    def operation(self, kind: str, resource: dict[str, Any], done: bool = False) -> dict[str, Any]:
        """A new Operation on `resource` (a Job or an Execution), stored with the services' ones."""
        location = "/".join(resource["name"].split("/")[:4])
        op = {
            "name": f"{location}/operations/{uuid.uuid4()}",
            "metadata": {"@type": TYPE + kind, **view(resource)},
            "done": done,
        }
        if done:
            op["response"] = {"@type": TYPE + kind, **view(resource)}
        self.run.data["operations"][op["name"]] = op
        return op

    def finish(self, op_name: str, kind: str, resource: dict[str, Any], error: Any = None) -> None:
        op = self.run.data["operations"].get(op_name)
        if op is None:
            return
        op["done"] = True
        op["metadata"] = {"@type": TYPE + kind, **view(resource)}
        if error:
            op["error"] = error
        else:
            op["response"] = {"@type": TYPE + kind, **view(resource)}

    def watch(self, execution: dict[str, Any], op: dict[str, Any]) -> None:
        """Finish `op` when the execution finishes; refresh its metadata until then."""
        self.data["watchers"].setdefault(execution["name"], []).append(op["name"])

    # Jobs ---------------------------------------------------------------------------------

    def account(self, name: str) -> str:
        """Cloud Run's default identity: the project's Compute Engine default account."""
        return (
            f"{self.cloud.project_number(name.split('/')[1])}-compute@developer.gserviceaccount.com"
        )

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        stamp = self.now()
        job = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": "1",
            "createTime": stamp,
            "creator": "localcloud@localhost",
            "_iam": {"version": 1, "bindings": [], "etag": "ACAB"},
        }
        self.data["jobs"][name] = job
        return self.apply(job, spec)

    def apply(self, job: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Write a new desired state: an Operation that settles on the next loop turn."""
        kept = {k: v for k, v in job.items() if k in m.OUTPUT_ONLY or k in ("name", "_iam")}
        job.clear()
        job.update({**kept, **spec, "name": kept["name"]})
        if "observedGeneration" in job:
            job["generation"] = str(int(job["generation"]) + 1)
        job.update(updateTime=self.now(), lastModifier="localcloud@localhost", reconciling=True)
        job["etag"] = m.etag()
        op = self.operation("Job", job)
        job["_op"] = op["name"]
        self.save()
        asyncio.get_running_loop().call_soon(self.settle, job["name"])
        return op

    def settle(self, name: str) -> None:
        """Finish a create or update: the image must be one localcloud built."""
        job = self.data["jobs"].get(name)
        if job is None or not job.get("reconciling"):
            return
        image = job["template"]["template"]["containers"][0]["image"]
        missing = self.cloud.registry.resolve_image(image) is None
        message = f"Image '{image}' not found."
        state = "CONDITION_FAILED" if missing else "CONDITION_SUCCEEDED"
        extra = {"reason": "CONTAINER_MISSING", "message": message} if missing else {}
        job["terminalCondition"] = m.condition("Ready", state, self.now(), **extra)
        job["reconciling"] = False
        job["observedGeneration"] = job["generation"]
        error = {"code": RPC_CODE["FAILED_PRECONDITION"], "message": message} if missing else None
        self.finish(job.pop("_op", ""), "Job", job, error)
        self.save()

    async def delete(self, job: dict[str, Any]) -> dict[str, Any]:
        """Stop and delete the job's executions, then the job; a done Operation."""
        for execution in self.executions_of(job["name"]):
            await self.remove_execution(execution)
        del self.data["jobs"][job["name"]]
        gone = {**job, "deleteTime": self.now()}
        op = self.operation("Job", gone, done=True)
        self.save()
        return op

    # Executions ---------------------------------------------------------------------------

    def start(self, job: dict[str, Any], template: dict[str, Any], creator: str) -> dict[str, Any]:
        """A new execution of `job` with its tasks, started; its Operation."""
        job_id = job["name"].rsplit("/", 1)[-1]
        taken = {n.rsplit("/", 1)[-1] for n in self.data["executions"]}
        stamp = self.now()
        execution = x.new_execution(job, template, x.execution_id(job_id, taken), stamp)
        execution["creator"] = creator or "localcloud@localhost"
        self.data["executions"][execution["name"]] = execution
        self.data["tasks"][execution["name"]] = [
            x.new_task(execution, index, stamp) for index in range(execution["taskCount"])
        ]
        job["executionCount"] = int(job.get("executionCount", 0)) + 1
        job["latestCreatedExecution"] = x.reference(execution)
        op = self.operation("Execution", execution)
        self.watch(execution, op)
        self.save()
        self.runner.start(execution)
        return op

    def touch(self, execution: dict[str, Any]) -> None:
        """Record a change: counts, times, etag, the job's reference and the watching LROs."""
        x.counts(execution, self.tasks_of(execution["name"]))
        execution["updateTime"], execution["etag"] = self.now(), m.etag()
        job = self.data["jobs"].get(execution["name"].split("/executions/")[0])
        latest = (job or {}).get("latestCreatedExecution") or {}
        if job and latest.get("name") == execution["name"]:
            job["latestCreatedExecution"] = x.reference(execution)
        for op_name in self.data["watchers"].get(execution["name"], []):
            op = self.run.data["operations"].get(op_name)
            if op is not None:
                op["metadata"] = {"@type": TYPE + "Execution", **view(execution)}
        self.save()

    def complete(
        self, execution: dict[str, Any], completed: dict[str, Any], error: Any = None
    ) -> None:
        """The execution has ended: its Completed condition, and every watching LRO done."""
        execution["completionTime"] = completed["lastTransitionTime"]
        execution["reconciling"] = False
        execution["conditions"][-1] = completed
        for task in self.tasks_of(execution["name"]):
            task["reconciling"] = False
        self.touch(execution)
        for op_name in self.data["watchers"].pop(execution["name"], []):
            self.finish(op_name, "Execution", execution, error)
        self.save()

    async def cancel(self, execution: dict[str, Any]) -> dict[str, Any]:
        """:cancel — an Operation that finishes once the running attempts have stopped."""
        if execution.get("completionTime"):
            short = execution["name"].rsplit("/", 1)[-1]
            raise ApiError(
                "FAILED_PRECONDITION",
                f"Execution '{short}' cannot be cancelled because it is not running.",
            )
        op = self.operation("Execution", execution)
        self.watch(execution, op)
        self.save()
        task = asyncio.get_running_loop().create_task(
            self.runner.stop(execution["name"], "Cancelled by user.")
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return op

    async def remove_execution(self, execution: dict[str, Any]) -> dict[str, Any]:
        """Stop an execution if it runs, then delete it and its tasks; a done Operation."""
        await self.runner.stop(execution["name"], "The execution was deleted.")
        self.data["tasks"].pop(execution["name"], None)
        del self.data["executions"][execution["name"]]
        self.data["watchers"].pop(execution["name"], None)
        op = self.operation("Execution", {**execution, "deleteTime": self.now()}, done=True)
        self.save()
        return op

    # Callbacks from the runner ----------------------------------------------------------

    def unavailable(self, execution: dict[str, Any], reason: str, message: str) -> None:
        """The image or a secret could not be had: the execution fails before any task."""
        stamp = self.now()
        execution["conditions"][0] = m.condition(
            "ResourcesAvailable", "CONDITION_FAILED", stamp, reason=reason, message=message
        )
        completed = m.condition("Completed", "CONDITION_FAILED", stamp, message=message)
        self.complete(
            execution, completed, {"code": RPC_CODE["FAILED_PRECONDITION"], "message": message}
        )

    def started(self, execution: dict[str, Any]) -> None:
        """Resources are there and tasks are being started."""
        stamp = self.now()
        execution["startTime"] = stamp
        seconds = self.cloud.clock.time() - _epoch(execution["createTime"])
        execution["conditions"] = x.started_conditions(stamp, max(seconds, 0.0))
        self.touch(execution)

    def attempt_started(self, execution: dict[str, Any], task: dict[str, Any]) -> None:
        """A task's process has been asked for (first attempt or a retry)."""
        stamp = self.now()
        task.update(_state="RUNNING", startTime=stamp, updateTime=stamp)
        task.setdefault("scheduledTime", stamp)
        task["conditions"] = [m.condition("Started", "CONDITION_SUCCEEDED", stamp)]
        self.touch(execution)

    def attempt_ended(
        self, execution: dict[str, Any], task: dict[str, Any], outcome: Outcome
    ) -> None:
        """An attempt ended: the task is done unless it failed with retries left."""
        stamp = self.now()
        task["lastAttemptResult"] = x.attempt_result(outcome)
        task["updateTime"] = stamp
        last = int(task.get("retried", 0)) >= int(task["maxRetries"])
        if outcome.code == 0 or last:
            ok = outcome.code == 0
            task.update(_state="SUCCEEDED" if ok else "FAILED", completionTime=stamp)
            state = "CONDITION_SUCCEEDED" if ok else "CONDITION_FAILED"
            extra = {} if ok else {"message": outcome.message}
            task["conditions"].append(m.condition("Completed", state, stamp, **extra))
        self.touch(execution)

    def cancelled(self, execution: dict[str, Any], tasks: list[dict[str, Any]], why: str) -> None:
        """Stopped (`:cancel`, delete, shutdown, restart): unfinished tasks count as cancelled."""
        stamp = self.now()
        for task in tasks:
            if task["_state"] in ("PENDING", "RUNNING"):
                if task["_state"] == "RUNNING":
                    status = {"code": RPC_CODE["CANCELLED"], "message": CANCELLED}
                    task["lastAttemptResult"] = {"status": status}
                task.update(_state="CANCELLED", completionTime=stamp, updateTime=stamp)
        completed = m.condition(
            "Completed", "CONDITION_FAILED", stamp, executionReason="CANCELLED", message=why
        )
        self.complete(execution, completed)

    def finished(self, execution: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        """Every task has ended: success, or the first failed task's account of itself."""
        stamp = self.now()
        failed = [t for t in tasks if t["_state"] == "FAILED"]
        if not failed:
            seconds = self.cloud.clock.time() - _epoch(execution.get("startTime", stamp))
            message = f"Execution completed successfully in {max(seconds, 0.0):.2f}s."
            self.complete(
                execution, m.condition("Completed", "CONDITION_SUCCEEDED", stamp, message=message)
            )
            return
        task, result = failed[0], failed[0]["lastAttemptResult"]
        message = (
            f"Task {task['name'].rsplit('/', 1)[-1]} failed with exit code: "
            f"{result.get('exitCode', 0)} and message: {result['status'].get('message', '')}"
        )
        completed = m.condition(
            "Completed",
            "CONDITION_FAILED",
            stamp,
            executionReason="NON_ZERO_EXIT_CODE",
            message=message,
        )
        self.complete(
            execution, completed, {"code": result["status"].get("code", 13), "message": message}
        )

    # Lifecycle ----------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a restart: settle jobs caught mid-update, cancel executions caught running."""
        for job in list(self.data["jobs"].values()):
            if job.get("reconciling"):
                self.settle(job["name"])
        for execution in list(self.data["executions"].values()):
            if not execution.get("completionTime"):
                self.cancelled(execution, self.tasks_of(execution["name"]), INTERRUPTED)

    async def stop_all(self) -> None:
        """Stop every running execution (before a reset)."""
        await self.runner.close("localcloud was reset while the execution ran.")

    async def close(self) -> None:
        await self.runner.close(INTERRUPTED)


def _epoch(stamp: str) -> float:
    return parse_rfc3339(stamp).timestamp()
