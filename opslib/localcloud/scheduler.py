"""Cloud Scheduler v1: HTTP jobs, with Google's validation, defaults and state rules.

Firing lives in scheduler_runner; this module is the resource API. Jobs are stored in the
wire shape with enum names; the Python client's enum numbers are translated on the way in.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from opslib.localcloud import resources, schema
from opslib.localcloud.clock import duration_seconds, duration_text, rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists, failed_precondition, invalid
from opslib.localcloud.router import Call, Router
from opslib.spec import cron
from opslib.spec.rules import REGIONS, RuleBroken

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
METHODS = {
    0: "POST",
    1: "POST",
    2: "GET",
    3: "HEAD",
    4: "PUT",
    5: "DELETE",
    6: "PATCH",
    7: "OPTIONS",
}
BODY_METHODS = ("POST", "PUT", "PATCH")
STATES = {0: "STATE_UNSPECIFIED", 1: "ENABLED", 2: "PAUSED", 3: "DISABLED", 4: "UPDATE_FAILED"}
RETRY_DEFAULTS = {
    "retryCount": 0,
    "maxRetryDuration": "0s",
    "minBackoffDuration": "5s",
    "maxBackoffDuration": "3600s",
    "maxDoublings": 5,
}
TOKEN = {"serviceAccountEmail": schema.SCALAR, "audience": schema.SCALAR, "scope": schema.SCALAR}
HTTP_TARGET = {
    "uri": schema.SCALAR,
    "httpMethod": schema.SCALAR,
    "headers": schema.ANY,
    "body": schema.SCALAR,
    "oauthToken": TOKEN,
    "oidcToken": TOKEN,
}
JOB_SCHEMA = {
    "name": schema.SCALAR,
    "description": schema.SCALAR,
    "pubsubTarget": schema.ANY,
    "appEngineHttpTarget": schema.ANY,
    "httpTarget": HTTP_TARGET,
    "schedule": schema.SCALAR,
    "timeZone": schema.SCALAR,
    "userUpdateTime": schema.SCALAR,
    "state": schema.SCALAR,
    "status": schema.ANY,
    "scheduleTime": schema.SCALAR,
    "lastAttemptTime": schema.SCALAR,
    "retryConfig": {k: schema.SCALAR for k in RETRY_DEFAULTS},
    "attemptDeadline": schema.SCALAR,
}
COLLECTION = "scheduler"


class Scheduler:
    """Jobs keyed by full name; `runner` (set by the server) fires them."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.jobs: dict[str, dict[str, Any]] = cloud.store.collection(COLLECTION)
        self.runner: Any = None

    def save(self) -> None:
        self.cloud.store.save(COLLECTION)

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise ApiError("NOT_FOUND", f"Job not found: {name}.")
        return self.jobs[name]

    def put(self, job: dict[str, Any]) -> dict[str, Any]:
        """Store a job the user created or changed: stamped now, with its next run."""
        job["userUpdateTime"] = rfc3339(self.cloud.clock.now())
        job["scheduleTime"] = self.next_run(job)
        self.jobs[job["name"]] = job
        self.save()
        return job

    def next_run(self, job: dict[str, Any]) -> str | None:
        """The next scheduled time after now on the job's wall clock (None unless ENABLED)."""
        if job["state"] != "ENABLED":
            return None
        start = self.cloud.clock.now()
        when = next(cron.iter_runs(job["schedule"], zone_name(job), start))
        return rfc3339(when)


def zone_name(job: dict[str, Any]) -> str:
    """The tz-database key for a job's zone (Scheduler also takes "utc" and no zone)."""
    zone = job.get("timeZone") or "UTC"
    return "UTC" if zone.lower() == "utc" else zone


def _check_location(parent: str, location: str) -> None:
    if location not in REGIONS:
        raise invalid(f"Location {parent} is not found or access is unallowed.", "parent")


def normalize(body: dict[str, Any], name: str) -> dict[str, Any]:
    """Validate a job as Scheduler does and fill the defaults it echoes."""
    job = {
        k: v
        for k, v in body.items()
        if k not in ("userUpdateTime", "state", "status", "scheduleTime", "lastAttemptTime")
    }
    if "pubsubTarget" in job or "appEngineHttpTarget" in job:
        raise ApiError("UNIMPLEMENTED", "localcloud emulates HTTP targets only (httpTarget).")
    target = job.get("httpTarget")
    if not target:
        raise invalid(
            "A target (http_target, pubsub_target or app_engine_http_target) is required.",
            "job.target",
        )
    if not job.get("schedule"):
        raise invalid("Schedule or time zone is invalid.", "job.schedule")
    if " every " in f" {job['schedule']} ":
        raise ApiError(
            "UNIMPLEMENTED",
            "localcloud does not emulate App Engine legacy schedules ('every ...'); use unix-cron.",
        )
    try:
        cron.validate(job["schedule"])
        cron.validate_time_zone(job.get("timeZone") or "UTC")
    except RuleBroken:
        raise invalid("Schedule or time zone is invalid.", "job.schedule") from None
    if len(job.get("description", "")) > 500:
        raise invalid("Description must be at most 500 characters.", "job.description")
    job["httpTarget"] = _http_target(target)
    deadline = duration_seconds(job.get("attemptDeadline"), 180.0)
    if not 15 <= deadline <= 1800:
        raise invalid(
            "attempt_deadline must be between 15 seconds and 30 minutes for HTTP targets.",
            "job.attempt_deadline",
        )
    job["attemptDeadline"] = duration_text(deadline)
    job["retryConfig"] = {**RETRY_DEFAULTS, **(job.get("retryConfig") or {})}
    retry = job["retryConfig"]
    if not 0 <= int(retry["retryCount"]) <= 5:
        raise invalid("retry_count must be between 0 and 5.", "job.retry_config.retry_count")
    if int(retry["maxDoublings"]) < 0:
        raise invalid("max_doublings must not be negative.", "job.retry_config.max_doublings")
    for key in ("minBackoffDuration", "maxBackoffDuration", "maxRetryDuration"):
        retry[key] = duration_text(duration_seconds(retry[key]))
    if duration_seconds(retry["minBackoffDuration"]) > duration_seconds(
        retry["maxBackoffDuration"]
    ):
        raise invalid(
            "min_backoff_duration must not exceed max_backoff_duration.", "job.retry_config"
        )
    job["name"] = name
    return job


def _http_target(target: dict[str, Any]) -> dict[str, Any]:
    target = dict(target)
    uri = target.get("uri", "")
    if not re.match(r"^https?://", uri) or len(uri) > 2083:
        raise invalid(
            "HttpTarget.uri must start with http:// or https:// and be at most 2083 characters.",
            "job.http_target.uri",
        )
    method = schema.enum_name(
        target.get("httpMethod", "POST"), METHODS, "job.http_target.http_method"
    )
    target["httpMethod"] = method
    if target.get("body") and method not in BODY_METHODS:
        raise invalid(
            "HTTP method must be POST, PUT or PATCH when a body is set.", "job.http_target.body"
        )
    if "oidcToken" in target and "oauthToken" in target:
        raise invalid("Only one of oauth_token and oidc_token may be set.", "job.http_target")
    headers = dict(target.get("headers") or {})
    for key in headers:
        if key.lower().startswith(("x-google-", "x-appengine-")) or key.lower() in (
            "host",
            "content-length",
        ):
            raise invalid(f"Header {key} cannot be set.", "job.http_target.headers")
    headers = {k: v for k, v in headers.items() if k.lower() != "user-agent"}
    headers["User-Agent"] = "Google-Cloud-Scheduler"
    target["headers"] = headers
    if "oauthToken" in target:
        target["oauthToken"].setdefault("scope", "https://www.googleapis.com/auth/cloud-platform")
    return target


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
        _check_location(parent, call.params["location"])
        body = schema.check(await call.json(), JOB_SCHEMA, "job")
        name = body.get("name") or f"{parent}/jobs/{secrets.token_hex(10)}"
        if not name.startswith(parent + "/jobs/") or not JOB_ID.match(name.rsplit("/", 1)[-1]):
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
            job["scheduleTime"] = sched.next_run(job)
            if to == "PAUSED":
                job.pop("scheduleTime", None)
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
                for r in sorted(REGIONS)
            ]
        }

    async def location(call: Call) -> dict[str, Any]:
        name = resources.parent(call)
        _check_location(name, call.params["location"])
        return {"name": name, "locationId": call.params["location"]}

    router.add("GET", "/v1/projects/{project}/locations", locations)
    router.add("GET", "/v1/projects/{project}/locations/{location}", location)
