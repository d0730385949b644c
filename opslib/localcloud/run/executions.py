"""Cloud Run v2 executions and tasks: their names, shapes, conditions and counts, as Google
writes them.

- An execution is named JOB-xxxxx (5 random lowercase letters and digits); its tasks are
  EXECUTION-task0 … EXECUTION-taskN-1, each with its `index`.
- Conditions: ResourcesAvailable, Started, Completed. Completed ends CONDITION_SUCCEEDED
  ("Execution completed successfully in 1.23s.") or CONDITION_FAILED with `executionReason`
  NON_ZERO_EXIT_CODE ("Task J-xxxxx-task0 failed with exit code: 1 and message: The container
  exited with an error.") or CANCELLED.
- Counts (running, succeeded, failed, cancelled, retried) come from the tasks; zero counts are
  left out, as proto3 JSON leaves out defaults.
- A task's `lastAttemptResult` holds the attempt's status (code 0 = OK), `exitCode` and, for a
  process that was stopped, `termSignal`.
No I/O here: jobs_backend keeps them, tasks changes them.
"""

from __future__ import annotations

import copy
import random
import string
import uuid
from typing import Any

from opslib.localcloud.run.jobs import condition, etag


def execution_id(job_id: str, taken: set[str]) -> str:
    """Cloud Run's execution naming: JOB-xxxxx, five random lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    while True:
        short = f"{job_id}-{''.join(random.choices(alphabet, k=5))}"
        if short not in taken:
            return short


def new_execution(
    job: dict[str, Any], template: dict[str, Any], short: str, now: str
) -> dict[str, Any]:
    """An execution of `job` from its (overridden) template, not started yet."""
    name = f"{job['name']}/executions/{short}"
    project, location = name.split("/")[1], name.split("/")[3]
    return {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creator": job.get("lastModifier", "localcloud@localhost"),
        "generation": "1",
        **{k: dict(template[k]) for k in ("labels", "annotations") if template.get(k)},
        "createTime": now,
        "updateTime": now,
        "launchStage": job.get("launchStage", "GA"),
        "job": job["name"].rsplit("/", 1)[-1],
        "parallelism": template.get("parallelism") or template["taskCount"],
        "taskCount": template["taskCount"],
        "template": copy.deepcopy(template["template"]),
        "reconciling": True,
        "conditions": [
            condition("ResourcesAvailable", "CONDITION_RECONCILING", now),
            condition("Started", "CONDITION_PENDING", now),
            condition("Completed", "CONDITION_PENDING", now),
        ],
        "observedGeneration": "1",
        "logUri": log_uri(project, location, job["name"].rsplit("/", 1)[-1], short),
        "etag": etag(),
    }


def new_task(execution: dict[str, Any], index: int, now: str) -> dict[str, Any]:
    """Task `index` of an execution, pending."""
    short = execution["name"].rsplit("/", 1)[-1]
    template = execution["template"]
    return {
        "name": f"{execution['name']}/tasks/{short}-task{index}",
        "uid": str(uuid.uuid4()),
        "generation": "1",
        "createTime": now,
        "updateTime": now,
        "job": execution["job"],
        "execution": short,
        "containers": template["containers"],
        "maxRetries": template["maxRetries"],
        "timeout": template["timeout"],
        "serviceAccount": template["serviceAccount"],
        **{k: template[k] for k in ("executionEnvironment",) if template.get(k)},
        "reconciling": True,
        "conditions": [condition("Started", "CONDITION_PENDING", now)],
        "observedGeneration": "1",
        "index": index,
        "logUri": execution["logUri"],
        "etag": etag(),
        "_state": "PENDING",
    }


def log_uri(project: str, location: str, job_id: str, short: str) -> str:
    """Where Cloud Console shows an execution's logs (Cloud Run's logUri shape)."""
    query = (
        f"resource.type%3D%22cloud_run_job%22%0Aresource.labels.job_name%3D%22{job_id}%22%0A"
        f"resource.labels.location%3D%22{location}%22%0A"
        f"labels.%22run.googleapis.com%2Fexecution_name%22%3D%22{short}%22"
    )
    return f"https://console.cloud.google.com/logs/viewer?project={project}&advancedFilter={query}"


def reference(execution: dict[str, Any]) -> dict[str, Any]:
    """The job's `latestCreatedExecution`: name, times and how it ended."""
    ref = {
        "name": execution["name"],
        "createTime": execution["createTime"],
        "completionStatus": completion_status(execution),
    }
    if execution.get("completionTime"):
        ref["completionTime"] = execution["completionTime"]
    return ref


def completion_status(execution: dict[str, Any]) -> str:
    """ExecutionReference.CompletionStatus of an execution."""
    completed = execution["conditions"][-1]
    if completed["state"] == "CONDITION_SUCCEEDED":
        return "EXECUTION_SUCCEEDED"
    if completed["state"] == "CONDITION_FAILED":
        cancelled = completed.get("executionReason") == "CANCELLED"
        return "EXECUTION_CANCELLED" if cancelled else "EXECUTION_FAILED"
    return "EXECUTION_RUNNING" if execution.get("startTime") else "EXECUTION_PENDING"


def counts(execution: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    """Set an execution's task counts from its tasks (zero counts are omitted, as in proto3)."""
    states = [t["_state"] for t in tasks]
    values = {
        "runningCount": states.count("RUNNING"),
        "succeededCount": states.count("SUCCEEDED"),
        "failedCount": states.count("FAILED"),
        "cancelledCount": states.count("CANCELLED"),
        "retriedCount": sum(1 for t in tasks if t.get("retried")),
    }
    for key, value in values.items():
        if value:
            execution[key] = value
        else:
            execution.pop(key, None)


def attempt_result(outcome: Any) -> dict[str, Any]:
    """A TaskAttemptResult: the status, the exit code and the stopping signal, if any."""
    result: dict[str, Any] = {"status": {}}
    if outcome.code:
        result["status"] = {"code": outcome.code, "message": outcome.message}
    if outcome.exit_code:
        result["exitCode"] = outcome.exit_code
    if outcome.signal:
        result["termSignal"] = outcome.signal
    return result


def started_conditions(stamp: str, seconds: float) -> list[dict[str, Any]]:
    """An execution's conditions once its tasks are being started."""
    return [
        condition("ResourcesAvailable", "CONDITION_SUCCEEDED", stamp),
        condition(
            "Started",
            "CONDITION_SUCCEEDED",
            stamp,
            message=f"Started deployed execution in {seconds:.2f}s.",
        ),
        condition("Completed", "CONDITION_RECONCILING", stamp),
    ]
