"""Cloud Run v2 jobs: Google's validation and defaults for a Job and for a `:run` request.

The rules (Run v2 protos `job`, `execution_template`, `task_template`, and Cloud Run's job
pages):
- A job id is lowercase letters, digits and hyphens, starts with a letter, does not end with a
  hyphen, and has at most 63 characters.
- `template` (ExecutionTemplate) is required: `taskCount` 1 by default, at most 10,000;
  `parallelism` 0 (as many as possible) up to `taskCount`.
- Its TaskTemplate has one container with an `image`; `maxRetries` 3 by default, 0-10;
  `timeout` 600s by default, 1s-24h, and up to 168h when `launchStage` is a preview stage
  (BETA or ALPHA), as Cloud Run's launch-stage validation words it.
- The env names CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION and CLOUD_RUN_TASK_* are reserved.
- Unknown fields are a 400; output-only fields in a request are ignored.
- `:run` overrides replace args (or clear them), merge env by name and replace `taskCount` and
  `timeout` for that execution only; a named override must name the container.
No I/O here: jobs_api turns requests into calls on these functions; executions_model shapes
the executions.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.clock import duration_seconds, duration_text
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.run import rules, services

JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LAUNCH_STAGES = {
    0: "LAUNCH_STAGE_UNSPECIFIED",
    1: "EARLY_ACCESS",
    2: "ALPHA",
    3: "BETA",
    4: "GA",
    5: "DEPRECATED",
    6: "UNIMPLEMENTED",
    7: "PRELAUNCH",
}
PREVIEW = {"ALPHA", "BETA", "EARLY_ACCESS", "PRELAUNCH"}
ENVIRONMENTS = {
    0: "EXECUTION_ENVIRONMENT_UNSPECIFIED",
    1: "EXECUTION_ENVIRONMENT_GEN1",
    2: "EXECUTION_ENVIRONMENT_GEN2",
}
TIMEOUT_GA, TIMEOUT_PREVIEW = rules.TASK_TIMEOUT_GA, rules.TASK_TIMEOUT_PREVIEW
OUTPUT_ONLY = services.RESOURCE_OUTPUT_ONLY | {"executionCount", "latestCreatedExecution"}
_A = schema.ANY
TASK_TEMPLATE_SCHEMA: dict[str, Any] = {
    k: _A
    for k in (
        "volumes",
        "maxRetries",
        "timeout",
        "serviceAccount",
        "executionEnvironment",
        "encryptionKey",
        "vpcAccess",
        "nodeSelector",
        "gpuZonalRedundancyDisabled",
    )
}
TASK_TEMPLATE_SCHEMA["containers"] = [services.CONTAINER_SCHEMA]
EXECUTION_TEMPLATE_SCHEMA: dict[str, Any] = {
    "labels": _A,
    "annotations": _A,
    "parallelism": _A,
    "taskCount": _A,
    "template": TASK_TEMPLATE_SCHEMA,
}
JOB_SCHEMA: dict[str, Any] = {
    k: _A
    for k in (
        *OUTPUT_ONLY,
        "name",
        "labels",
        "annotations",
        "client",
        "clientVersion",
        "launchStage",
        "binaryAuthorization",
        "startExecutionToken",
        "runExecutionToken",
        "etag",
    )
}
JOB_SCHEMA["template"] = EXECUTION_TEMPLATE_SCHEMA
ENV_SCHEMA = {"name": _A, "value": _A, "valueSource": _A}
RUN_SCHEMA: dict[str, Any] = {
    "name": _A,
    "validateOnly": _A,
    "etag": _A,
    "overrides": {
        "containerOverrides": [{"name": _A, "args": _A, "env": [ENV_SCHEMA], "clearArgs": _A}],
        "taskCount": _A,
        "timeout": _A,
    },
}
LAUNCH_STAGE_MESSAGE = (
    "The feature 'task timeout over 24 hours' is not supported in the declared launch stage on "
    "the resource. The launch stage annotation should be specified at least as BETA. Please "
    "visit https://cloud.google.com/run/docs/troubleshooting#launch-stage-validation for "
    "in-depth troubleshooting documentation."
)


def check_job_id(job_id: str) -> None:
    if not JOB_ID.match(job_id or ""):
        raise invalid(
            "Violation in CreateJobRequest.job_id: only lowercase, digits, and hyphens; must "
            "begin with letter, and cannot end with hyphen; must be less than 64 characters.",
            "job_id",
        )


def normalize(body: dict[str, Any], account: str) -> dict[str, Any]:
    """The job input with output-only fields dropped, enums named and defaults filled."""
    job = schema.check(body, JOB_SCHEMA, "job")
    spec = {k: v for k, v in job.items() if k not in OUTPUT_ONLY}
    if spec.get("startExecutionToken") or spec.get("runExecutionToken"):
        raise ApiError(
            "UNIMPLEMENTED",
            "localcloud does not emulate start_execution_token / run_execution_token; "
            "call jobs.run after the job is created.",
        )
    services.check_annotations(spec.get("annotations"), "job.annotations")
    stage = schema.enum_name(spec.get("launchStage") or "GA", LAUNCH_STAGES, "job.launch_stage")
    spec["launchStage"] = "GA" if stage == LAUNCH_STAGES[0] else stage
    if not isinstance(spec.get("template"), dict):
        raise invalid("job.template is required.", "job.template")
    spec["template"] = _execution_template(spec["template"], spec["launchStage"], account)
    return spec


def _execution_template(template: dict[str, Any], stage: str, account: str) -> dict[str, Any]:
    out = dict(template)
    services.check_annotations(out.get("annotations"), "job.template.annotations")
    out["taskCount"] = task_count(out.get("taskCount"), "job.template.task_count")
    parallelism = _integer(out.get("parallelism") or 0, "job.template.parallelism")
    if not 0 <= parallelism <= out["taskCount"]:
        raise invalid(
            "job.template.parallelism must be between 0 and task_count "
            f"({out['taskCount']}), got {parallelism}.",
            "job.template.parallelism",
        )
    if parallelism:
        out["parallelism"] = parallelism
    else:
        out.pop("parallelism", None)
    if not isinstance(out.get("template"), dict):
        raise invalid("job.template.template is required.", "job.template.template")
    out["template"] = _task_template(out["template"], stage, account)
    return out


def _task_template(template: dict[str, Any], stage: str, account: str) -> dict[str, Any]:
    out = dict(template)
    containers = out.get("containers") or []
    first = services.only_container(containers, "job.template.template.containers", "task")
    out["containers"] = [_container(first)]
    retries = _integer(
        out.get("maxRetries", rules.RETRIES_DEFAULT), "job.template.template.max_retries"
    )
    if not 0 <= retries <= rules.RETRIES_MOST:
        raise invalid(
            f"job.template.template.max_retries must be between 0 and {rules.RETRIES_MOST}.",
            "job.template.template.max_retries",
        )
    out["maxRetries"] = retries
    out["timeout"] = task_timeout(out.get("timeout"), stage, "job.template.template.timeout")
    out["serviceAccount"] = out.get("serviceAccount") or account
    if "executionEnvironment" in out:
        out["executionEnvironment"] = schema.enum_name(
            out["executionEnvironment"], ENVIRONMENTS, "job.template.template.execution_environment"
        )
    return out


def _container(container: dict[str, Any]) -> dict[str, Any]:
    out = dict(container)
    where = "job.template.template.containers"
    if not out.get("image"):
        raise invalid(f"{where}[0].image is required.", f"{where}.image")
    services.check_env(out.get("env", []), rules.JOB_RESERVED_ENV, where)
    resources = dict(out.get("resources") or {})
    limits = {**services.DEFAULT_LIMITS, **(resources.get("limits") or {})}
    with services.rule_checked(f"{where}[0].resources.limits", f"{where}.resources"):
        rules.check_limits(rules.cpu(limits["cpu"]), rules.memory(limits["memory"]), None)
    resources["limits"] = limits
    out["resources"] = resources
    return out


def _integer(value: Any, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value at '{field}' (TYPE_INT32), {value!r}", field) from None


def task_count(value: Any, field: str) -> int:
    """taskCount: 1 when unset (0), at most 10,000."""
    count = _integer(value or 1, field)
    if not 1 <= count <= rules.TASKS_MOST:
        raise invalid(f"{field} must be between 1 and {rules.TASKS_MOST}, got {count}.", field)
    return count


def task_timeout(value: Any, stage: str, field: str) -> str:
    """The task timeout as a Duration: 600s by default, 1s-24h (168h in a preview stage)."""
    try:
        seconds = duration_seconds(value, float(rules.TASK_TIMEOUT_DEFAULT))
    except ValueError:
        raise invalid(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration)", field
        ) from None
    if seconds > TIMEOUT_GA and stage in PREVIEW and seconds <= TIMEOUT_PREVIEW:
        return duration_text(seconds)
    if seconds > TIMEOUT_GA and seconds <= TIMEOUT_PREVIEW:
        raise invalid(LAUNCH_STAGE_MESSAGE, field)
    if not 1 <= seconds <= TIMEOUT_PREVIEW:
        raise invalid(
            f"{field} must be between 1s and {TIMEOUT_PREVIEW}s (168 hours; over 24 hours "
            f"needs a preview launch stage), got {duration_text(seconds)}.",
            field,
        )
    return duration_text(seconds)


def overrides(body: dict[str, Any]) -> dict[str, Any]:
    """A RunJobRequest's fields, checked against the proto (unknown fields are a 400)."""
    return schema.check(body, RUN_SCHEMA)


def apply_overrides(template: dict[str, Any], given: dict[str, Any], stage: str) -> dict[str, Any]:
    """The ExecutionTemplate for one execution: the job's, with `:run` overrides applied."""
    out = copy.deepcopy(template)
    if given.get("taskCount"):
        out["taskCount"] = task_count(given["taskCount"], "overrides.task_count")
        if out.get("parallelism", 0) > out["taskCount"]:
            out["parallelism"] = out["taskCount"]
    if given.get("timeout") is not None:
        out["template"]["timeout"] = task_timeout(given["timeout"], stage, "overrides.timeout")
    container = out["template"]["containers"][0]
    for override in given.get("containerOverrides") or []:
        name = override.get("name") or ""
        if name and container.get("name") and name != container["name"]:
            raise invalid(
                f"overrides.container_overrides: no container named '{name}' in the job.",
                "overrides.container_overrides.name",
            )
        if override.get("clearArgs"):
            container["args"] = []
        elif override.get("args"):
            container["args"] = list(override["args"])
        _merge_env(container, override.get("env") or [])
    out["template"]["containers"] = [_container(container)]
    return out


def _merge_env(container: dict[str, Any], env: list[dict[str, Any]]) -> None:
    merged = {e["name"]: e for e in container.get("env", [])}
    for var in env:
        merged[var.get("name", "")] = {k: v for k, v in var.items() if v not in (None, "")}
    if merged:
        container["env"] = list(merged.values())


def condition(kind: str, state: str, now: str, **extra: Any) -> dict[str, Any]:
    """A Condition as Cloud Run writes it (state names, RFC 3339 transition time)."""
    return {"type": kind, "state": state, "lastTransitionTime": now, **extra}


def etag() -> str:
    return f'"{uuid.uuid4().hex[:16]}"'
