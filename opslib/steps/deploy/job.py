"""Step 3 for `job.runtime: job`: the same image as the service, deployed as a Cloud Run job.

Work over Scheduler's 30 minutes runs as a Cloud Run job (Run v2 `jobs`): the image built from
the service folder, with the container command `python -m scripts.batch.<module>`, `tasks`
tasks of up to 24 h each (`parallelism` at once, `max_retries` retries of a failed task) and
the spec's resources, env and secrets. Plan, then apply: the plan is `desired.job_diff` (also
what `opslib status` shows as drift), so an unchanged spec and folder make no mutating call.
The Scheduler's account gets `roles/run.invoker` on this job only: the predefined role that
holds `run.jobs.run` and nothing broader (Google's "Execute jobs on a schedule" page asks for
it; `roles/run.jobsExecutor` is the project-wide alternative, and overrides would need
`run.jobs.runWithOverrides`, which opslib's empty `:run` body does not).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from google.cloud import run_v2

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call, google_errors
from opslib.core.plan import Change, Plan
from opslib.core.progress import wait
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.spec.rules import format_duration
from opslib.steps.deploy.desired import INVOKER, command, invoker_diff, job_diff, members
from opslib.steps.deploy.live import unready
from opslib.steps.deploy.service import container, env_flags


def desired_job(spec: Spec, image: str) -> dict[str, Any]:
    """The Run v2 Job the spec asks for (the service's container, another entry point)."""
    task = container(spec, image)
    entry, *args = command(spec)
    task["command"], task["args"] = [entry], args
    job = spec.job
    return {
        "template": {
            "task_count": job.tasks,
            "parallelism": job.parallelism,
            "template": {
                "containers": [task],
                "max_retries": job.max_retries,
                "timeout": {"seconds": int(job.effective_task_timeout)},
            },
        }
    }


def gcloud_jobs_deploy(spec: Spec, image: str) -> str:
    """The same with gcloud (`gcloud run jobs deploy` creates or updates)."""
    d, job = spec.deploy, spec.job
    entry, *args = command(spec)
    flags = [
        "gcloud", "run", "jobs", "deploy", job.name,
        f"--image={image}",
        f"--project={spec.project}",
        f"--region={spec.region}",
        f"--command={entry}",
        f"--args={','.join(args)}",
        f"--tasks={job.tasks}",
        f"--parallelism={job.parallelism}",
        f"--max-retries={job.max_retries}",
        f"--task-timeout={format_duration(job.effective_task_timeout)}",
        f"--memory={d.memory_text}",
        f"--cpu={d.cpu}",
        *env_flags(spec),
    ]  # fmt: skip
    return shlex.join(flags)


@dataclass
class JobPlan:
    plan: Plan
    live: run_v2.Job | None
    desired: dict[str, Any]
    grant: bool


def _where(spec: Spec) -> str:
    return f"deploy of job {spec.job.name}"


def plan(spec: Spec, image: str, clients: Clients) -> JobPlan:
    """What step 3 would change for the Cloud Run job; reads only."""
    where = _where(spec)
    live = call(clients.jobs.get_job, where, "run", missing_ok=True, name=names.run_job(spec))
    policy = None
    if live is not None:
        request = {"resource": live.name}
        policy = call(clients.jobs.get_iam_policy, where, "run", request=request)
    d = job_diff(spec, image, live)
    detail = d.detail() or (
        f"Cloud Run job: {spec.job.tasks} task(s), python -m scripts.batch.{spec.job.module}"
    )
    action, broken = d.action, unready(live)
    if broken:  # an update that failed or was cut short: deploying it again repairs it
        detail, action = (
            f"{broken}; deploys it again; {detail}",
            d.action.replace("no change", "update"),
        )
    result = Plan()
    gcloud = gcloud_jobs_deploy(spec, image)
    result.add(Change("deploy", f"job {spec.job.name}", action, d.fields, detail, gcloud))
    missing = invoker_diff([_member(spec)], policy).action != "no change"
    result.add(_invoker_change(spec, missing))
    return JobPlan(result, live, desired_job(spec, image), missing)


def _member(spec: Spec) -> str:
    return f"serviceAccount:{spec.invoker_account}"


def _invoker_change(spec: Spec, missing: bool) -> Change:
    return Change(
        "deploy",
        f"job invoker {spec.invoker_account}",
        "create" if missing else "no change",
        detail="roles/run.invoker on this job only (run.jobs.run, for Scheduler's OAuth call)",
        gcloud=shlex.join(
            [
                *("gcloud", "run", "jobs", "add-iam-policy-binding", spec.job.name),
                *(f"--region={spec.region}", f"--member={_member(spec)}", f"--role={INVOKER}"),
            ]
        ),
    )


def apply(spec: Spec, clients: Clients, jp: JobPlan, progress: bool) -> None:
    """Create or update the job (waiting on its operation), then grant the invoker."""
    if jp.plan.changes[0].action != "no change":
        fix = "fix the job settings in the spec, then run step 3 again"
        with google_errors(_where(spec), "run", fix):
            if jp.live is None:
                operation = clients.jobs.create_job(
                    parent=names.location(spec), job=jp.desired, job_id=spec.job.name
                )
            else:
                live = clients.jobs.get_job(name=names.run_job(spec))
                live.template = jp.desired["template"]
                operation = clients.jobs.update_job(job=live)
            wait(operation, f"deploy job {spec.job.name}", progress)
    if jp.grant:
        _grant(spec, clients)


def _grant(spec: Spec, clients: Clients) -> None:
    name = names.run_job(spec)
    with google_errors(f"invoker grant on job {spec.job.name}", "run"):
        policy = clients.jobs.get_iam_policy(request={"resource": name})
        if _member(spec) not in members(policy, INVOKER):
            policy.bindings.add(role=INVOKER, members=[_member(spec)])
        clients.jobs.set_iam_policy(request={"resource": name, "policy": policy})
