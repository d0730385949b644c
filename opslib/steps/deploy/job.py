"""Step 3 for `job.runtime: job`: the same image as the service, deployed as a Cloud Run job.

Work over Scheduler's 30 minutes runs as a Cloud Run job (Run v2 `jobs`): the image built from
the service folder, with the container command `python -m scripts.batch.<module>`, `tasks`
tasks of up to 24 h each (`parallelism` at once, `max_retries` retries of a failed task) and
the spec's resources, env and secrets. Plan, then apply: an unchanged spec and folder make no
mutating call. The Scheduler's account gets `roles/run.invoker` on this job only: the
predefined role that holds `run.jobs.run` and nothing broader (Google's "Execute jobs on a
schedule" page asks for it; `roles/run.jobsExecutor` is the project-wide alternative, and
overrides would need `run.jobs.runWithOverrides`, which opslib's empty `:run` body does not).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions

from opslib.cloud.clients import Clients
from opslib.core.plan import Change, Plan, compare
from opslib.core.progress import wait
from opslib.spec.model import Spec
from opslib.steps.deploy.service import (
    INVOKER,
    api_errors,
    container_fields,
    desired_env,
    desired_template,
    env_flags,
)


def job_name(spec: Spec) -> str:
    return f"projects/{spec.project}/locations/{spec.region}/jobs/{spec.job.name}"


def command(spec: Spec) -> tuple[list[str], list[str]]:
    """The container's command and args: the job module as its entry point."""
    return ["python"], ["-m", f"scripts.batch.{spec.job.module}"]


def desired_job(spec: Spec, image: str) -> dict[str, Any]:
    """The Run v2 Job the spec asks for (the service's container, another entry point)."""
    container = desired_template(spec, image)["containers"][0]
    container["command"], container["args"] = command(spec)
    job = spec.job
    return {
        "template": {
            "task_count": job.tasks,
            "parallelism": job.parallelism,
            "template": {
                "containers": [container],
                "max_retries": job.max_retries,
                "timeout": {"seconds": int(job.effective_task_timeout)},
            },
        }
    }


def _live_fields(live: Any) -> dict[str, Any]:
    execution = live.template
    task = execution.template
    container = task.containers[0]
    return {
        **container_fields(container),
        "command": list(container.command) + list(container.args),
        "tasks": execution.task_count,
        "parallelism": execution.parallelism,
        "max_retries": task.max_retries,
        "task_timeout": int(task.timeout.total_seconds()),
    }


def _desired_fields(spec: Spec, image: str) -> dict[str, Any]:
    d, job = spec.deploy, spec.job
    env = desired_env(spec)
    cmd, args = command(spec)
    return {
        "image": image,
        "command": cmd + args,
        "cpu": str(d.cpu),
        "memory": d.memory_text,
        "tasks": job.tasks,
        "parallelism": job.parallelism,
        "max_retries": job.max_retries,
        "task_timeout": int(job.effective_task_timeout),
        "env": env,
    }


def gcloud_jobs_deploy(spec: Spec, image: str) -> str:
    """The same with gcloud (`gcloud run jobs deploy` creates or updates)."""
    d, job = spec.deploy, spec.job
    cmd, args = command(spec)
    flags = [
        "gcloud", "run", "jobs", "deploy", job.name,
        f"--image={image}",
        f"--project={spec.project}",
        f"--region={spec.region}",
        f"--command={','.join(cmd)}",
        f"--args={','.join(args)}",
        f"--tasks={job.tasks}",
        f"--parallelism={job.parallelism}",
        f"--max-retries={job.max_retries}",
        f"--task-timeout={int(job.effective_task_timeout)}s",
        f"--memory={d.memory_text}",
        f"--cpu={d.cpu}",
        *env_flags(spec),
    ]  # fmt: skip
    return shlex.join(flags)


@dataclass
class JobPlan:
    plan: Plan
    live: Any | None
    desired: dict[str, Any]
    grant: bool


def plan(spec: Spec, image: str, clients: Clients) -> JobPlan:
    """What step 3 would change for the Cloud Run job; reads only."""
    try:
        live = clients.jobs.get_job(name=job_name(spec))
    except exceptions.NotFound:
        live = None
    current = _live_fields(live) if live is not None else None
    action, differ = compare(_desired_fields(spec, image), current)
    result = Plan()
    result.add(
        Change(
            "deploy",
            f"job {spec.job.name}",
            action,
            differ,
            detail=f"Cloud Run job: {spec.job.tasks} task(s), python -m scripts.batch."
            f"{spec.job.module}",
            gcloud=gcloud_jobs_deploy(spec, image),
        )
    )
    missing = _invoker_missing(spec, clients, live)
    result.add(_invoker_change(spec, missing))
    return JobPlan(result, live, desired_job(spec, image), missing)


def _member(spec: Spec) -> str:
    return f"serviceAccount:{spec.invoker_account}"


def _invoker_missing(spec: Spec, clients: Clients, live: Any | None) -> bool:
    if live is None:
        return True
    policy = clients.jobs.get_iam_policy(request={"resource": live.name})
    return not any(b.role == INVOKER and _member(spec) in b.members for b in policy.bindings)


def _invoker_change(spec: Spec, missing: bool) -> Change:
    return Change(
        "deploy",
        f"job invoker {spec.invoker_account}",
        "create" if missing else "no change",
        detail="roles/run.invoker on this job only (run.jobs.run, for Scheduler's OAuth call)",
        gcloud=shlex.join(
            [
                "gcloud",
                "run",
                "jobs",
                "add-iam-policy-binding",
                spec.job.name,
                f"--region={spec.region}",
                f"--member={_member(spec)}",
                f"--role={INVOKER}",
            ]
        ),
    )


def apply(spec: Spec, clients: Clients, jp: JobPlan, progress: bool) -> None:
    """Create or update the job (waiting on its operation), then grant the invoker."""
    if jp.plan.changes[0].action != "no change":
        fix = "fix the job settings in the spec, then run step 3 again"
        with api_errors(f"deploy of job {spec.job.name}", fix):
            if jp.live is None:
                operation = clients.jobs.create_job(
                    parent=f"projects/{spec.project}/locations/{spec.region}",
                    job=jp.desired,
                    job_id=spec.job.name,
                )
            else:
                live = clients.jobs.get_job(name=job_name(spec))
                live.template = jp.desired["template"]
                operation = clients.jobs.update_job(job=live)
            wait(operation, f"deploy job {spec.job.name}", progress)
    if jp.grant:
        _grant(spec, clients)


def _grant(spec: Spec, clients: Clients) -> None:
    name = job_name(spec)
    policy = clients.jobs.get_iam_policy(request={"resource": name})
    if not any(b.role == INVOKER and _member(spec) in b.members for b in policy.bindings):
        policy.bindings.add(role=INVOKER, members=[_member(spec)])
    clients.jobs.set_iam_policy(request={"resource": name, "policy": policy})
