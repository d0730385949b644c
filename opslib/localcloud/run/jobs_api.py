"""Cloud Run Admin API v2 jobs, executions and tasks: the routes (jobs_backend keeps the state).

`R = /v2/projects/{project}/locations/{location}`:
- `POST R/jobs?jobId=` (Job body), `PATCH R/jobs/{job}` (the whole Job; `allowMissing` creates)
  and `DELETE R/jobs/{job}` answer Operations with the Job as metadata; `GET R/jobs` (newest
  first, `pageSize`/`pageToken`) and `GET R/jobs/{job}` answer Jobs. `validateOnly=true`
  checks and answers a done Operation without changing anything. A stale `etag` is a 409
  ABORTED.
- `POST R/jobs/{job}:run` (RunJobRequest) answers an Operation with the Execution as metadata;
  `:getIamPolicy`, `:setIamPolicy`, `:testIamPermissions` work as on services.
- `GET R/jobs/{job}/executions` (newest first, paged), `GET|DELETE …/executions/{e}`,
  `POST …/executions/{e}:cancel`; `GET …/executions/{e}/tasks` (by index, paged) and
  `GET …/tasks/{task}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opslib.localcloud import resources
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists
from opslib.localcloud.router import Call, Router
from opslib.localcloud.run import executions as x
from opslib.localcloud.run import iam, jobs_iam
from opslib.localcloud.run import jobs as m
from opslib.localcloud.run.jobs_backend import TYPE, JobsBackend, view

BASE = "/v2/projects/{project}/locations/{location}/jobs"
EXECUTION = BASE + "/{job}/executions/{execution}"
# What a guarded DELETE or :cancel does to the resource once the request passes: an Operation.
Change = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _job_name(call: Call) -> str:
    return f"{resources.parent(call)}/jobs/{call.params['job']}"


def _execution_name(call: Call) -> str:
    return f"{_job_name(call)}/executions/{call.params['execution']}"


def _checked_etag(given: Any, resource: dict[str, Any]) -> None:
    if given and given != resource.get("etag"):
        raise ApiError(
            "ABORTED",
            f"The etag '{given}' does not match the current etag of {resource['name']}; "
            "read the resource again and retry.",
        )


def _validated(kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    """What `validateOnly=true` answers: a done Operation, nothing stored."""
    body = {"@type": TYPE + kind, **view(resource)}
    return {"name": f"{resource['name']}/operations/validate", "done": True, "response": body}


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


async def _guarded(
    given: dict[str, Any], kind: str, resource: dict[str, Any], change: Change
) -> dict[str, Any]:
    """Delete or cancel as Cloud Run does: a stale etag is ABORTED, validateOnly changes nothing."""
    _checked_etag(given.get("etag"), resource)
    if _true(given.get("validateOnly")):
        return _validated(kind, resource)
    return await change(resource)


def register(router: Router, cloud: Cloud, run: Any) -> JobsBackend:
    """Serve the jobs, executions and tasks routes; the backend is what the server keeps."""
    jobs = JobsBackend(cloud, run)
    _job_routes(router, jobs)
    _change_routes(router, jobs)
    _run_routes(router, jobs)
    iam.routes(router, BASE + "/{job}", lambda call: jobs.job(_job_name(call)), jobs.save)
    _execution_routes(router, jobs)
    return jobs


def _job_routes(router: Router, jobs: JobsBackend) -> None:
    async def create(call: Call) -> dict[str, Any]:
        job_id = call.query.get("jobId", "")
        m.check_job_id(job_id)
        name = f"{resources.parent(call)}/jobs/{job_id}"
        spec = m.normalize(await call.json(), jobs.account(name))
        if name in jobs.data["jobs"]:
            raise already_exists(f"Resource '{name}' already exists.")
        if _true(call.query.get("validateOnly")):
            return _validated("Job", {**spec, "name": name})
        return jobs.create(name, spec)

    async def get(call: Call) -> dict[str, Any]:
        return view(jobs.job(_job_name(call)))

    async def list_jobs(call: Call) -> dict[str, Any]:
        prefix = f"{resources.parent(call)}/jobs/"
        found = [j for n, j in jobs.data["jobs"].items() if n.startswith(prefix)]
        found.sort(key=lambda j: (j["createTime"], j["name"]), reverse=True)
        return resources.paged("jobs", [view(j) for j in found], call.query, 100, 1000)

    router.add("POST", BASE, create)
    router.add("GET", BASE, list_jobs)
    router.add("GET", BASE + "/{job}", get)


def _change_routes(router: Router, jobs: JobsBackend) -> None:
    async def patch(call: Call) -> dict[str, Any]:
        name = _job_name(call)
        body = await call.json()
        spec = m.normalize(body, jobs.account(name))
        if name not in jobs.data["jobs"]:
            if not _true(call.query.get("allowMissing")):
                raise resources.not_found(name)
            if _true(call.query.get("validateOnly")):
                return _validated("Job", {**spec, "name": name})
            return jobs.create(name, spec)
        job = jobs.job(name)
        _checked_etag(body.get("etag"), job)
        if _true(call.query.get("validateOnly")):
            return _validated("Job", {**view(job), **spec})
        return jobs.apply(job, spec)

    async def delete(call: Call) -> dict[str, Any]:
        return await _guarded(call.query, "Job", jobs.job(_job_name(call)), jobs.delete)

    router.add("PATCH", BASE + "/{job}", patch)
    router.add("DELETE", BASE + "/{job}", delete)


def _run_routes(router: Router, jobs: JobsBackend) -> None:
    async def run(call: Call) -> dict[str, Any]:
        name = _job_name(call)
        request = m.overrides(await call.json())
        given = request.get("overrides") or {}
        header = call.request.headers.get("Authorization", "")
        creator = jobs_iam.authorize(jobs, header, name, bool(given))
        job = jobs.job(name)
        _checked_etag(request.get("etag"), job)
        template = m.apply_overrides(job["template"], given, job.get("launchStage", "GA"))
        if _true(request.get("validateOnly")):
            preview = x.new_execution(
                job, template, x.execution_id(name.rsplit("/", 1)[-1], set()), jobs.now()
            )
            return _validated("Execution", preview)
        return jobs.start(job, template, creator)

    router.add("POST", BASE + "/{job}:run", run)


def _execution_routes(router: Router, jobs: JobsBackend) -> None:
    async def list_executions(call: Call) -> dict[str, Any]:
        found = [view(e) for e in jobs.executions_of(jobs.job(_job_name(call))["name"])]
        return resources.paged("executions", found, call.query, 100, 1000)

    async def get(call: Call) -> dict[str, Any]:
        return view(jobs.execution(_execution_name(call)))

    async def cancel(call: Call) -> dict[str, Any]:
        execution = jobs.execution(_execution_name(call))
        return await _guarded(await call.json(), "Execution", execution, jobs.cancel)

    async def delete(call: Call) -> dict[str, Any]:
        execution = jobs.execution(_execution_name(call))
        return await _guarded(call.query, "Execution", execution, jobs.remove_execution)

    async def list_tasks(call: Call) -> dict[str, Any]:
        found = [view(t) for t in jobs.tasks_of(jobs.execution(_execution_name(call))["name"])]
        return resources.paged("tasks", found, call.query, 100, 1000)

    async def get_task(call: Call) -> dict[str, Any]:
        return view(jobs.task(f"{_execution_name(call)}/tasks/{call.params['task']}"))

    router.add("GET", BASE + "/{job}/executions", list_executions)
    router.add("GET", EXECUTION, get)
    router.add("DELETE", EXECUTION, delete)
    router.add("POST", EXECUTION + ":cancel", cancel)
    router.add("GET", EXECUTION + "/tasks", list_tasks)
    router.add("GET", EXECUTION + "/tasks/{task}", get_task)
