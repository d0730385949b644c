"""The Cloud Run service (or job) a spec asks for, and its diff against the live one: step 3's
plan and the drift `opslib status` shows, from one function each.

Both sides are flattened to the fields step 3 sets, normalised as Cloud Run reads them:
Google's defaults for unset fields (`opslib.spec.defaults`), CPU and memory in canonical units
(`1000m` is `1`, `2048Mi` is `2Gi`), durations in Google's JSON form, plain env vars apart from
secret references. Env values may be secrets: a diff names the variables, never their values.
The image is the tag of the packed service folder, and the routes are what its endpoint file
serves, so an edit of the folder since the last deploy is a change too.
"""

from __future__ import annotations

from typing import Any

from google.cloud import run_v2

from opslib.core.plan import Diff, diff
from opslib.spec import defaults
from opslib.spec import rules as g
from opslib.spec.model import Spec

ROUTES_ANNOTATION = "opslib/routes"  # on each revision template: the paths its source serves
# Set when step 3 deploys an unchanged template again to repair a service that is not ready:
# without a change in the template Cloud Run makes no new revision.
REPAIR_ANNOTATION = "opslib/redeploy"
HIDDEN = ("env",)
ROUTES = "routes"
INVOKERS = "invokers"
INVOKER = "roles/run.invoker"  # holds run.routes.invoke on a service and run.jobs.run on a job
PUBLIC = frozenset({"allUsers", "allAuthenticatedUsers"})


def cpu(value: object) -> str:
    """CPUs as one spelling (`1000m` and `1.0` are `1`); a value Cloud Run rejects as it is."""
    try:
        return str(g.parse_cpu(value).normalize())
    except g.RuleBroken:
        return str(value)


def memory(value: object) -> str:
    """Memory as its shortest exact quantity (`2048Mi` is `2Gi`)."""
    try:
        return g.format_memory(g.parse_memory(value))
    except g.RuleBroken:
        return str(value)


def secret_ref(ref: str, version: str) -> str:
    """`NAME:VERSION`, whether the secret is named alone or as projects/P/secrets/NAME."""
    return f"{ref.rsplit('/', 1)[-1]}:{version or 'latest'}"


def _container(spec: Spec, image: str) -> dict[str, object]:
    d = spec.deploy
    return {
        "image": image,
        "cpu": cpu(d.cpu),
        "memory": memory(d.memory_text),
        "env": dict(sorted(d.env.items())),
        "secrets": {k: secret_ref(*v.rsplit(":", 1)) for k, v in sorted(spec.secrets.items())},
    }


def _live_container(container: run_v2.Container | None) -> dict[str, object]:
    if container is None:
        return {"image": "", "cpu": defaults.CPU, "memory": defaults.MEMORY, "env": {}}
    limits = container.resources.limits
    env, secrets = {}, {}
    for var in container.env:
        ref = var.value_source.secret_key_ref
        if ref.secret:
            secrets[var.name] = secret_ref(ref.secret, ref.version)
        else:
            env[var.name] = var.value
    return {
        "image": container.image,
        "cpu": cpu(limits.get("cpu", defaults.CPU)),
        "memory": memory(limits.get("memory", defaults.MEMORY)),
        "env": dict(sorted(env.items())),
        "secrets": dict(sorted(secrets.items())),
    }


def service_fields(spec: Spec, image: str, routes: list[str] | None) -> dict[str, object]:
    """The service as step 3 deploys it (`spec` is what all its route jobs ask, merged).

    `routes` None leaves the routes out: they follow from the same source as the image tag,
    so a caller that found the tag unchanged need not parse the endpoint file.
    """
    d = spec.deploy
    fields = {
        **_container(spec, image),
        "timeout": g.format_duration(d.timeout),
        "min_instances": d.min_instances,
        "max_instances": d.max_instances,
        "concurrency": d.effective_concurrency,
    }
    return fields if routes is None else fields | {ROUTES: sorted(routes)}


def live_service_fields(service: run_v2.Service) -> dict[str, object]:
    """The same fields of a live service, Google's defaults filled in."""
    t = service.template
    fields = _live_container(t.containers[0] if t.containers else None)
    timeout = t.timeout.total_seconds() if "timeout" in t else 0
    concurrency = t.max_instance_request_concurrency
    fields |= {
        "timeout": g.format_duration(timeout or defaults.REQUEST_TIMEOUT),
        "min_instances": t.scaling.min_instance_count,
        "max_instances": t.scaling.max_instance_count or defaults.MAX_INSTANCES,
        "concurrency": concurrency or defaults.concurrency(_cpus(fields["cpu"])),
    }
    recorded = live_routes(service)
    return fields if recorded is None else fields | {ROUTES: sorted(recorded)}


def _cpus(text: object) -> float:
    try:
        return float(g.parse_cpu(text))
    except g.RuleBroken:
        return 1.0


def live_routes(service: run_v2.Service | None) -> list[str] | None:
    """The routes the live template recorded at its deploy, when opslib deployed it."""
    if service is None:
        return []
    text = dict(service.template.annotations).get(ROUTES_ANNOTATION)
    return None if text is None else [p for p in text.split(",") if p]


def service_diff(
    spec: Spec, image: str, routes: list[str] | None, live: run_v2.Service | None
) -> Diff:
    """What step 3 would change on the live service (`opslib status` calls it drift)."""
    want = service_fields(spec, image, routes)
    have = live_service_fields(live) if live is not None else None
    if have is not None and ROUTES not in have:  # deployed without opslib: routes unknown
        want.pop(ROUTES, None)
    return diff(want, have, HIDDEN)


def invoker_diff(wanted: list[str], policy: Any | None) -> Diff:
    """The invoker members step 3 manages on a service or a Cloud Run job: `wanted` get
    roles/run.invoker and public members lose it. `policy` None: no resource yet."""
    if policy is None:
        return diff({INVOKERS: sorted(wanted)}, None)
    have = members(policy, INVOKER) & (set(wanted) | PUBLIC)
    return diff({INVOKERS: sorted(wanted)}, {INVOKERS: sorted(have)})


def command(spec: Spec) -> list[str]:
    """A Cloud Run job's container command: the job module as its entry point."""
    return ["python", "-m", f"scripts.batch.{spec.job.module}"]


def job_fields(spec: Spec, image: str) -> dict[str, object]:
    """The Cloud Run job as step 3 deploys it (`spec` with the overlap guard's env)."""
    job = spec.job
    return {
        **_container(spec, image),
        "command": command(spec),
        "tasks": job.tasks,
        "parallelism": job.parallelism,
        "max_retries": job.max_retries,
        "task_timeout": g.format_duration(job.effective_task_timeout),
    }


def live_job_fields(live: run_v2.Job) -> dict[str, object]:
    """The same fields of a live Cloud Run job, Google's defaults filled in."""
    execution = live.template
    task = execution.template
    container = task.containers[0] if task.containers else None
    timeout = task.timeout.total_seconds() if "timeout" in task else 0
    retries = task.max_retries if "max_retries" in task else defaults.TASK_MAX_RETRIES
    return {
        **_live_container(container),
        "command": [*container.command, *container.args] if container else [],
        "tasks": execution.task_count or defaults.TASK_COUNT,
        "parallelism": execution.parallelism,
        "max_retries": retries,
        "task_timeout": g.format_duration(timeout or defaults.TASK_TIMEOUT),
    }


def job_diff(spec: Spec, image: str, live: run_v2.Job | None) -> Diff:
    """What step 3 would change on the live Cloud Run job (`opslib status` calls it drift)."""
    have = live_job_fields(live) if live is not None else None
    return diff(job_fields(spec, image), have, HIDDEN)


def members(policy: Any, role: str) -> set[str]:
    """The members holding `role` in an IAM policy."""
    return {m for b in policy.bindings if b.role == role for m in b.members}
