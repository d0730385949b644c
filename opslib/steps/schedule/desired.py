"""The Scheduler job a spec asks for, and its diff against the live job: step 4's plan and the
drift `opslib status` shows, from one function.

Fields are compared by their update-mask path, normalised as Scheduler reads them: Google's
defaults filled in for unset fields (`opslib.spec.defaults`), cron spacing folded, UTC's
spellings made one, durations in Google's JSON form (`900s`), headers by lower-case name,
bodies as JSON. Headers and bodies may carry secrets: a diff names them without their values.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from google.cloud import scheduler_v1

from opslib.core.plan import Diff, diff
from opslib.spec import defaults, names
from opslib.spec import rules as g
from opslib.spec.model import Spec

SECRET_FIELDS = ("http_target.headers", "http_target.body")  # values never shown
OIDC = ("http_target.oidc_token.service_account_email", "http_target.oidc_token.audience")
OAUTH = ("http_target.oauth_token.service_account_email", "http_target.oauth_token.scope")
TARGET_FIELDS = ("http_target.uri", OIDC[1])  # unknown while the service has no URL


def desired_job(spec: Spec, service_url: str | None) -> dict[str, Any]:
    """The Scheduler HTTP job the spec asks for, in the Python client's field names.

    A route job calls `service_url` + its route with an OIDC token; a Cloud Run job's
    Scheduler job starts it through the Run Admin API with an OAuth token (Google's APIs take
    access tokens, not ID tokens). `service_url` None: not known (no live service yet).
    """
    job = _common(spec)
    if spec.job.effective_runtime == "job":
        job["http_target"] = {
            "uri": names.run_job_url(spec),
            "http_method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": b"{}",
            "oauth_token": {
                "service_account_email": spec.invoker_account,
                "scope": defaults.OAUTH_SCOPE,
            },
        }
    else:
        job["http_target"] = _route_target(spec, service_url or "")
    return job


def _common(spec: Spec) -> dict[str, Any]:
    s, r = spec.schedule, spec.schedule.retry
    return {
        "name": names.scheduler_job(spec),
        "description": spec.job.description,
        "schedule": s.cron,
        "time_zone": s.time_zone,
        "attempt_deadline": timedelta(seconds=s.attempt_deadline),
        "retry_config": {
            "retry_count": r.count,
            "min_backoff_duration": timedelta(seconds=r.min_backoff),
            "max_backoff_duration": timedelta(seconds=r.max_backoff),
            "max_doublings": r.max_doublings,
            "max_retry_duration": timedelta(seconds=r.max_retry_duration),
        },
    }


def _route_target(spec: Spec, service_url: str) -> dict[str, Any]:
    s = spec.schedule
    custom_type = any(k.lower() == "content-type" for k in s.headers)
    target: dict[str, Any] = {
        "uri": service_url.rstrip("/") + spec.job.route,
        "http_method": s.http_method,
        "headers": {**({} if custom_type else {"Content-Type": "application/json"}), **s.headers},
        "oidc_token": {
            "service_account_email": spec.invoker_account,
            "audience": s.audience or service_url,
        },
    }
    if s.http_method in g.BODY_METHODS:
        target["body"] = s.body_bytes
    return target


def _duration(value: object) -> str:
    """A Duration (timedelta from proto-plus, or seconds) in Google's JSON form."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value or 0)
    return g.format_duration(round(seconds, 6))


def _body(data: bytes) -> object:
    """Equal JSON is an equal body, whatever its spacing."""
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data


def flat(job: dict[str, Any] | scheduler_v1.Job) -> dict[str, object]:
    """A job's compared fields by update-mask path, normalised as Scheduler reads them.

    Read from the raw protobuf: proto-plus's attribute access cost 2 ms a job, which `opslib
    status` paid for every job of the fleet on every call."""
    job = job if isinstance(job, scheduler_v1.Job) else scheduler_v1.Job(job)
    pb = scheduler_v1.Job.pb(job)
    t = pb.http_target
    retry: dict[str, object] = dict(defaults.RETRY)
    if pb.HasField("retry_config"):
        retry = {k: getattr(pb.retry_config, k) for k in retry}
    retry = {
        k: _duration(_seconds(v)) if k.endswith("_duration") else int(v)  # type: ignore[call-overload]
        for k, v in retry.items()
    }
    headers = {k.lower(): v for k, v in t.headers.items() if k.lower() != "user-agent"}
    deadline = _seconds(pb.attempt_deadline) if pb.HasField("attempt_deadline") else 0
    oidc = t.oidc_token.service_account_email
    method = scheduler_v1.HttpMethod(t.http_method).name if t.http_method else ""
    values: dict[str, object] = {
        "schedule": " ".join(pb.schedule.split()),
        "time_zone": defaults.time_zone(pb.time_zone),
        "description": pb.description,
        "attempt_deadline": g.format_duration(deadline or defaults.ATTEMPT_DEADLINE),
        "http_target.uri": t.uri,
        "http_target.http_method": method or defaults.HTTP_METHOD,
        "http_target.headers": sorted(headers.items()),
        "http_target.body": _body(t.body),
        OIDC[0]: oidc or None,
        # Scheduler's default audience is the URI (only when an OIDC token is set).
        OIDC[1]: (t.oidc_token.audience or t.uri) if oidc else None,
        OAUTH[0]: t.oauth_token.service_account_email or None,
        OAUTH[1]: (t.oauth_token.scope or defaults.OAUTH_SCOPE)
        if t.HasField("oauth_token")
        else None,
    }
    return values | {f"retry_config.{k}": v for k, v in retry.items()}


def _seconds(value: object) -> float:
    """A protobuf Duration (or plain seconds) as seconds."""
    if hasattr(value, "seconds"):
        return value.seconds + value.nanos / 1e9  # type: ignore[attr-defined]
    return float(value or 0)  # type: ignore[arg-type]


def job_diff(spec: Spec, service_url: str | None, live: scheduler_v1.Job | None) -> Diff:
    """What step 4 would change on the live job (`opslib status` calls it drift).

    With `service_url` None (no live service) the target URL and audience are left out: they
    cannot be known until step 3 has run.
    """
    want = flat(desired_job(spec, service_url))
    if service_url is None and spec.job.effective_runtime != "job":
        want = {k: v for k, v in want.items() if k not in TARGET_FIELDS}
    return diff(want, flat(live) if live is not None else None, SECRET_FIELDS)
