"""Cloud Scheduler v1: the routes for jobs (create, list, get, patch, delete, pause, resume,
run) and the locations Scheduler serves.

A PATCH applies the fields its `updateMask` names (all body fields without one) and keeps a
paused job paused; `:run` fires at once through the runner, even a paused job.
"""

from __future__ import annotations

import secrets
from typing import Any

from opslib.localcloud import resources, schema
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import already_exists, failed_precondition, invalid
from opslib.localcloud.router import Call, Router
from opslib.localcloud.scheduler import rules
from opslib.localcloud.scheduler.jobs import (
    JOB_SCHEMA,
    Scheduler,
    check_location,
    normalize,
)


def register(router: Router, cloud: Cloud) -> Scheduler:
    """Serve the jobs and locations routes; the server keeps the Scheduler for its runner."""
    sched = Scheduler(cloud)
    base = "/v1/projects/{project}/locations/{location}/jobs"
    _jobs(router, sched, base)
    _job_changes(router, sched, base)
    _job_states(router, sched, base)
    _locations(router)
    return sched


def _job_name(call: Call) -> str:
    """The job a call's path names."""
    return f"{resources.parent(call)}/jobs/{call.params['job']}"


def _jobs(router: Router, sched: Scheduler, base: str) -> None:
    """Create, list and read jobs."""

    async def create(call: Call) -> dict[str, Any]:
        parent = resources.parent(call)
        check_location(parent, call.params["location"])
        body = schema.check(await call.json(), JOB_SCHEMA, "job")
        name = body.get("name") or f"{parent}/jobs/{secrets.token_hex(10)}"
        job_id = name.rsplit("/", 1)[-1]
        if not name.startswith(parent + "/jobs/") or not rules.JOB_ID.match(job_id):
            raise invalid(
                f"Job name {name} is invalid; it must be {parent}/jobs/JOB_ID "
                "with letters, numbers, hyphens or underscores.",
                "job.name",
            )
        if name in sched.jobs:
            raise already_exists(f"Job {name} already exists.")
        job = normalize(body, name)
        job["state"] = "ENABLED"
        return sched.put(job)

    async def list_jobs(call: Call) -> dict[str, Any]:
        prefix = f"{resources.parent(call)}/jobs/"
        items = [j for n, j in sorted(sched.jobs.items()) if n.startswith(prefix)]
        return resources.paged("jobs", items, call.query, 500, 500)

    async def get(call: Call) -> dict[str, Any]:
        return sched.get(_job_name(call))

    router.add("POST", base, create)
    router.add("GET", base, list_jobs)
    router.add("GET", base + "/{job}", get)


def _job_changes(router: Router, sched: Scheduler, base: str) -> None:
    """Update and delete a job."""

    async def patch(call: Call) -> dict[str, Any]:
        name = _job_name(call)
        job = sched.get(name)
        body = schema.check(await call.json(), JOB_SCHEMA, "job")
        mask = [schema.camel(p) for p in call.query.get("updateMask", "").split(",") if p]
        merged = dict(job)
        for path in mask or list(body):
            top = path.split(".")[0]
            if top in (
                "name",
                "state",
                "status",
                "userUpdateTime",
                "scheduleTime",
                "lastAttemptTime",
            ):
                continue
            if top in body:
                merged[top] = body[top]
            else:
                merged.pop(top, None)
        updated = normalize(merged, name)
        updated.update({k: job[k] for k in ("state", "status", "lastAttemptTime") if k in job})
        return sched.put(updated)

    async def delete(call: Call) -> dict[str, Any]:
        name = _job_name(call)
        sched.get(name)
        del sched.jobs[name]
        sched.save()
        return {}

    router.add("PATCH", base + "/{job}", patch)
    router.add("DELETE", base + "/{job}", delete)


def _job_states(router: Router, sched: Scheduler, base: str) -> None:
    """Pause, resume and run a job now."""
    cloud = sched.cloud

    def transition(want: str, to: str):
        async def handler(call: Call) -> dict[str, Any]:
            job = sched.get(_job_name(call))
            if job["state"] != want:
                raise failed_precondition(f"Job is in state {job['state']}; it must be {want}.")
            job["state"] = to
            job["userUpdateTime"] = rfc3339(cloud.clock.now())
            sched.reschedule(job)
            sched.save()
            return job

        return handler

    async def run(call: Call) -> dict[str, Any]:
        job = sched.get(_job_name(call))
        await call.json()
        sched.runner.run_now(job["name"])
        return job

    router.add("POST", base + "/{job}:pause", transition("ENABLED", "PAUSED"))
    router.add("POST", base + "/{job}:resume", transition("PAUSED", "ENABLED"))
    router.add("POST", base + "/{job}:run", run)


def _locations(router: Router) -> None:
    """The locations Scheduler serves (Google's regions)."""

    async def locations(call: Call) -> dict[str, Any]:
        project = call.params["project"]
        return {
            "locations": [
                {"name": f"projects/{project}/locations/{r}", "locationId": r}
                for r in sorted(rules.LOCATIONS)
            ]
        }

    async def location(call: Call) -> dict[str, Any]:
        name = resources.parent(call)
        check_location(name, call.params["location"])
        return {"name": name, "locationId": call.params["location"]}

    router.add("GET", "/v1/projects/{project}/locations", locations)
    router.add("GET", "/v1/projects/{project}/locations/{location}", location)
