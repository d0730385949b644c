"""Cloud Scheduler v1: HTTP jobs, with Google's validation, defaults and state rules.

Firing lives in `runner`, the routes in `api` and the limits in `rules`; this module is the
resource model. Jobs are stored in the wire shape with enum names; the Python client's enum
numbers are translated on the way in.
"""

from __future__ import annotations

import re
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.clock import duration_seconds, duration_text, rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.scheduler import rules
from opslib.localcloud.scheduler.rules import RETRY_DEFAULTS

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
        self.reschedule(job)
        self.jobs[job["name"]] = job
        self.save()
        return job

    def reschedule(self, job: dict[str, Any]) -> None:
        """Set `scheduleTime` to the next run, or leave it out when there is none (a paused
        job): Google omits an unset time, it never answers null."""
        when = self.next_run(job)
        if when is None:
            job.pop("scheduleTime", None)
        else:
            job["scheduleTime"] = when

    def next_run(self, job: dict[str, Any]) -> str | None:
        """The next scheduled time after now on the job's wall clock (None unless ENABLED)."""
        if job["state"] != "ENABLED":
            return None
        start = self.cloud.clock.now()
        when = next(rules.runs(job["schedule"], job.get("timeZone"), start))
        return rfc3339(when)


def check_location(parent: str, location: str) -> None:
    if location not in rules.LOCATIONS:
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
        rules.check_schedule(job["schedule"])
        rules.zone(job.get("timeZone"))
    except rules.RuleError as exc:
        raise invalid(str(exc), "job.schedule") from None
    if len(job.get("description", "")) > rules.DESCRIPTION_MOST:
        raise invalid("Description must be at most 500 characters.", "job.description")
    job["httpTarget"] = _http_target(target)
    deadline = duration_seconds(job.get("attemptDeadline"), rules.DEADLINE_DEFAULT)
    if not rules.DEADLINE_LEAST <= deadline <= rules.DEADLINE_MOST:
        raise invalid(
            "attempt_deadline must be between 15 seconds and 30 minutes for HTTP targets.",
            "job.attempt_deadline",
        )
    job["attemptDeadline"] = duration_text(deadline)
    job["retryConfig"] = _retry_config(job.get("retryConfig") or {})
    job["name"] = name
    return job


def _retry_config(given: dict[str, Any]) -> dict[str, Any]:
    """RetryConfig with Scheduler's defaults filled in and its limits checked."""
    retry = {**RETRY_DEFAULTS, **given}
    if not 0 <= int(retry["retryCount"]) <= rules.RETRY_COUNT_MOST:
        raise invalid("retry_count must be between 0 and 5.", "job.retry_config.retry_count")
    if int(retry["maxDoublings"]) < 0:
        raise invalid("max_doublings must not be negative.", "job.retry_config.max_doublings")
    for key in ("minBackoffDuration", "maxBackoffDuration", "maxRetryDuration"):
        retry[key] = duration_text(duration_seconds(retry[key]))
    least = duration_seconds(retry["minBackoffDuration"])
    if least > duration_seconds(retry["maxBackoffDuration"]):
        raise invalid(
            "min_backoff_duration must not exceed max_backoff_duration.", "job.retry_config"
        )
    return retry


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
