"""Step 4: the Cloud Scheduler HTTP job that calls the service's route on its cron (OIDC).

Plan, then apply: `plan` only reads (the live Cloud Run service for its URL and request
timeout, then the job), checks the deadline chain against that live service and compares
desired and live field by field, so an unchanged spec makes no mutating call. Every change
carries the gcloud command that would do the same.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pandas as pd
from google.api_core import exceptions
from google.cloud import scheduler_v1
from google.rpc import code_pb2

from opslib.cloud.clients import Clients, clients_for
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Plan
from opslib.spec import cron
from opslib.spec import rules as g
from opslib.spec.model import Spec

STEP = "schedule"
RUN_TIMEOUT_DEFAULT = 300.0  # Cloud Run's request timeout when the template leaves it unset
DEADLINE_DEFAULT = 180.0  # Scheduler's HTTP attempt deadline when unset
RETRY_DEFAULTS: dict[str, float] = {
    "retry_count": 0,
    "min_backoff_duration": 5.0,
    "max_backoff_duration": 3600.0,
    "max_doublings": 5,
    "max_retry_duration": 0.0,
}
GCLOUD_METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT")  # gcloud's --http-method choices
SECRET_FIELDS = ("http_target.headers", "http_target.body")  # values never shown in a plan
_OIDC = ("http_target.oidc_token.service_account_email", "http_target.oidc_token.audience")
_OAUTH = ("http_target.oauth_token.service_account_email", "http_target.oauth_token.scope")
# A Cloud Run job is started through the Run Admin API with an OAuth access token (not OIDC).
RUN_API = "https://run.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_FLAGS = {
    "schedule": "--schedule",
    "time_zone": "--time-zone",
    "description": "--description",
    "attempt_deadline": "--attempt-deadline",
    "http_target.uri": "--uri",
    _OIDC[0]: "--oidc-service-account-email",
    _OIDC[1]: "--oidc-token-audience",
    _OAUTH[0]: "--oauth-service-account-email",
    _OAUTH[1]: "--oauth-token-scope",
    "retry_config.retry_count": "--max-retry-attempts",
    "retry_config.min_backoff_duration": "--min-backoff",
    "retry_config.max_backoff_duration": "--max-backoff",
    "retry_config.max_doublings": "--max-doublings",
    "retry_config.max_retry_duration": "--max-retry-duration",
}


class Planned(NamedTuple):
    """A plan plus what applying it needs: the desired job, the live one, the changed fields."""

    plan: Plan
    job: dict[str, Any]
    live: scheduler_v1.Job | None
    fields: tuple[str, ...]


def job_path(spec: Spec) -> str:
    """The job's full name; its id is the spec's job name, so one spec owns one job."""
    return f"projects/{spec.project}/locations/{spec.region}/jobs/{spec.job.name}"


def service_path(spec: Spec) -> str:
    """The Cloud Run service whose URL and timeout the job depends on."""
    return f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"


def run_job_url(spec: Spec) -> str:
    """The Run Admin API call that starts an execution of the spec's Cloud Run job."""
    return f"{RUN_API}/v2/projects/{spec.project}/locations/{spec.region}/jobs/{spec.job.name}:run"


def _job_target(spec: Spec) -> dict[str, Any]:
    """POST jobs/J:run with an OAuth token (Google APIs take access tokens, not ID tokens)."""
    return {
        "uri": run_job_url(spec),
        "http_method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": b"{}",
        "oauth_token": {"service_account_email": spec.invoker_account, "scope": CLOUD_PLATFORM},
    }


def desired_job(spec: Spec, service_url: str) -> dict[str, Any]:
    """The Scheduler HTTP job the spec asks for, in the Python client's field names."""
    job = _http_job(spec, service_url)
    if spec.job.effective_runtime == "job":
        job["http_target"] = _job_target(spec)
    return job


def _http_job(spec: Spec, service_url: str) -> dict[str, Any]:
    s, r = spec.schedule, spec.schedule.retry
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
    return {
        "name": job_path(spec),
        "description": spec.job.description,
        "schedule": s.cron,
        "time_zone": s.time_zone,
        "http_target": target,
        "attempt_deadline": timedelta(seconds=s.attempt_deadline),
        "retry_config": {
            "retry_count": r.count,
            "min_backoff_duration": timedelta(seconds=r.min_backoff),
            "max_backoff_duration": timedelta(seconds=r.max_backoff),
            "max_doublings": r.max_doublings,
            "max_retry_duration": timedelta(seconds=r.max_retry_duration),
        },
    }


def _seconds(value: object) -> float:
    """Durations arrive as timedelta from proto-plus; compare them as rounded seconds."""
    return round(value.total_seconds(), 6) if isinstance(value, timedelta) else 0.0


def _zone(name: str) -> str:
    """Scheduler treats no zone, `utc` and `Etc/UTC` alike."""
    return "Etc/UTC" if name.lower() in ("", "utc", "etc/utc") else name


def _body(data: bytes) -> object:
    """Equal JSON is an equal body, whatever its spacing."""
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data


def _flat(job: dict[str, Any] | scheduler_v1.Job) -> dict[str, object]:
    """The compared fields of a job, by update-mask path, normalised as Scheduler reads them."""
    job = job if isinstance(job, scheduler_v1.Job) else scheduler_v1.Job(job)
    t, retry = job.http_target, dict(RETRY_DEFAULTS)
    if "retry_config" in job:
        retry = {k: getattr(job.retry_config, k) for k in retry}
        retry = {k: _seconds(v) if isinstance(v, timedelta) else v for k, v in retry.items()}
    headers = {k.lower(): v for k, v in t.headers.items() if k.lower() != "user-agent"}
    flat: dict[str, object] = {
        "schedule": " ".join(job.schedule.split()),
        "time_zone": _zone(job.time_zone),
        "description": job.description,
        "attempt_deadline": _seconds(job.attempt_deadline) or DEADLINE_DEFAULT,
        "http_target.uri": t.uri,
        "http_target.http_method": t.http_method.name if t.http_method else "POST",
        "http_target.headers": sorted(headers.items()),
        "http_target.body": _body(t.body),
        _OIDC[0]: t.oidc_token.service_account_email,
        # Scheduler's default audience is the URI (only when an OIDC token is set).
        _OIDC[1]: (t.oidc_token.audience or t.uri) if t.oidc_token.service_account_email else "",
        _OAUTH[0]: t.oauth_token.service_account_email or None,
        _OAUTH[1]: (t.oauth_token.scope or CLOUD_PLATFORM) if "oauth_token" in t else None,
    }
    return flat | {f"retry_config.{k}": v for k, v in retry.items()}


def differences(
    desired: dict[str, Any] | scheduler_v1.Job, live: scheduler_v1.Job
) -> tuple[str, ...]:
    """The update-mask paths where a live job differs from the desired one."""
    want, have = _flat(desired), _flat(live)
    return tuple(path for path in want if want[path] != have[path])


def check_deadlines(spec: Spec, run_timeout: float) -> None:
    """Scheduler must wait longer than the job needs, yet give up before Cloud Run does."""
    fmt, deadline, where = g.format_duration, spec.schedule.attempt_deadline, _where(spec)
    if not g.ATTEMPT_DEADLINE_MIN <= deadline <= g.ATTEMPT_DEADLINE_MAX:
        raise BadInput(
            where,
            f"schedule.attempt_deadline {fmt(deadline)} is outside Scheduler's 15s-30m",
            "set schedule.attempt_deadline between 15s and 1800s",
        )
    if deadline > run_timeout:
        raise BadInput(
            where,
            f"schedule.attempt_deadline {fmt(deadline)} is above the request timeout of the "
            f"live Cloud Run service {spec.service} ({fmt(run_timeout)}): Cloud Run would "
            "answer 504 before Scheduler gives up",
            f"lower schedule.attempt_deadline to {fmt(run_timeout)}, or set deploy.timeout "
            f"to {fmt(deadline)} and run step 3 (deploy) again",
        )
    expected = spec.job.expected_duration
    if expected is not None and expected >= deadline:
        raise BadInput(
            where,
            f"job.expected_duration {fmt(expected)} is not below schedule.attempt_deadline "
            f"{fmt(deadline)}: every attempt would be cut off",
            f"raise schedule.attempt_deadline above {fmt(expected)} (and deploy.timeout "
            "with it), or correct job.expected_duration",
        )


def _where(spec: Spec) -> str:
    return f"schedule job {spec.job.name}"


def _api_error(where: str, exc: exceptions.GoogleAPICallError) -> OpslibError:
    """One-line errors from the REST clients (409 is Conflict, 400 BadRequest; gcp-facts §0)."""
    text = f"{type(exc).__name__} ({exc.code}): {exc.message}"
    if isinstance(exc, exceptions.BadRequest):
        return BadInput(where, text, "correct the schedule section of the spec (opslib check)")
    if isinstance(exc, exceptions.Conflict):
        return OpslibError(where, text, "the job changed meanwhile; run schedule again")
    if isinstance(exc, exceptions.PermissionDenied | exceptions.Unauthenticated):
        fix = "grant roles/cloudscheduler.admin and roles/run.viewer to your account"
        return OpslibError(where, text, fix)
    return OpslibError(where, text, "run schedule again; if it persists, see 07_troubleshoot")


def _call(spec: Spec, fn: Callable[..., Any], *, missing_ok: bool = False, **kwargs: Any) -> Any:
    """Call the API; Google's errors become OpslibError (a missing resource None if ok)."""
    try:
        return fn(**kwargs)
    except exceptions.GoogleAPICallError as exc:
        if missing_ok and isinstance(exc, exceptions.NotFound):
            return None
        raise _api_error(_where(spec), exc) from None


def _live_service(spec: Spec, clients: Clients) -> Any:
    """The deployed Cloud Run service; the job cannot exist without its URL."""
    service = _call(spec, clients.run.get_service, missing_ok=True, name=service_path(spec))
    if service is None or not service.uri:
        state = "does not exist" if service is None else "has no URL yet"
        raise OpslibError(
            _where(spec),
            f"Cloud Run service {spec.service} {state} in {spec.project}/{spec.region}, "
            "so the job has no URL to call",
            "run step 3 (deploy: notebooks/03_deploy) first, then schedule again",
        )
    return service


def _live_cloud_run_job(spec: Spec, clients: Clients) -> Any:
    """The Cloud Run job the Scheduler job starts; it must exist before it is scheduled."""
    name = f"projects/{spec.project}/locations/{spec.region}/jobs/{spec.job.name}"
    live = _call(spec, clients.jobs.get_job, missing_ok=True, name=name)
    if live is None:
        raise OpslibError(
            _where(spec),
            f"Cloud Run job {spec.job.name} does not exist in {spec.project}/{spec.region}",
            "run step 3 (deploy: notebooks/03_deploy) first, then schedule again",
        )
    return live


def _live_job(spec: Spec, clients: Clients, required: bool = False) -> Any:
    """The job as Scheduler has it, or None when it does not exist (an error if required)."""
    live = _call(spec, clients.scheduler.get_job, missing_ok=True, name=job_path(spec))
    if live is None and required:
        what = f"there is no Scheduler job {job_path(spec)}"
        raise OpslibError(_where(spec), what, "create it first: run step 4 (schedule)")
    return live


def _change(spec: Spec, action: str, fields: tuple = (), detail: str = "", cmd: str = "") -> Change:
    """One Change for this spec's job."""
    return Change(STEP, job_path(spec), action, fields, detail, cmd)


def plan(spec: Spec, clients: Clients | None = None) -> Planned:
    """Read the service and the job, check deadlines, and say what would change; no writes."""
    clients = clients or clients_for(spec)
    if spec.job.effective_runtime == "job":  # Scheduler only starts the execution
        _live_cloud_run_job(spec, clients)
        job = desired_job(spec, "")
    else:
        service = _live_service(spec, clients)
        check_deadlines(spec, _seconds(service.template.timeout) or RUN_TIMEOUT_DEFAULT)
        job = desired_job(spec, service.uri)
    live = _live_job(spec, clients)
    if live is None:
        change = _change(spec, "create", (), _summary(job), create_command(spec, job))
        return Planned(Plan([change]), job, None, ())
    fields = differences(job, live)
    if not fields and live.state == scheduler_v1.Job.State.UPDATE_FAILED:
        fields = tuple(_flat(job))  # Scheduler's advice after a failed update: repeat it
    if not fields:
        change = _change(spec, "no change", (), f"state {live.state.name}")
        return Planned(Plan([change]), job, live, ())
    want, have = _flat(job), _flat(live)
    detail = "; ".join(
        f"{f} changed"
        if f in SECRET_FIELDS
        else f"{f}: {_show(f, have[f], True)} -> {_show(f, want[f], True)}"
        for f in fields
    )
    change = _change(spec, "update", fields, detail, update_command(spec, job, live, fields))
    return Planned(Plan([change]), job, live, fields)


def _summary(job: dict[str, Any]) -> str:
    """What the job will do, for people: when, in which zone, what it calls."""
    target, deadline = job["http_target"], _seconds(job["attempt_deadline"])
    return (
        f"{job['schedule']} ({_describe(job['schedule'])}) {job['time_zone']} -> "
        f"{target['http_method']} {target['uri']}, deadline {g.format_duration(deadline)}"
    )


def _describe(expr: str) -> str:
    """A cron sentence, or nothing for schedules cron-descriptor cannot read."""
    try:
        return cron.describe(expr)
    except Exception:  # legacy App Engine schedules ("every 24 hours") and the like
        return ""


def _show(path: str, value: object, quote: bool = False) -> str:
    """A compared value as gcloud and people write it: durations with their unit (900s)."""
    if path.endswith(("_duration", "deadline")) and isinstance(value, int | float):
        return g.format_duration(value)
    return repr(value) if quote else str(value)


def _dict_flag(pairs: dict[str, str]) -> str:
    """gcloud's KEY=VALUE,... list, with an alternate delimiter when a value holds a comma."""
    items = [f"{k}={v}" for k, v in pairs.items()]
    if not any("," in item for item in items):
        return ",".join(items)
    sep = next(c for c in ";|#~@!" if not any(c in item for item in items))
    return f"^{sep}^" + sep.join(items)


def _flags(path: str, job: dict[str, Any], live: scheduler_v1.Job | None) -> list[str]:
    """The gcloud flags that set one field; `live` is None when creating."""
    target, flat = job["http_target"], _flat(job)
    if path in _OIDC:  # gcloud takes the audience only together with the account
        return [f"{_FLAGS[p]}={flat[p]}" for p in _OIDC if flat[p]]
    if path in _OAUTH:
        return [f"{_FLAGS[p]}={flat[p]}" for p in _OAUTH if flat[p]]
    if path in _FLAGS:
        return [f"{_FLAGS[path]}={_show(path, flat[path])}"]
    if path == "http_target.http_method":
        return [f"--http-method={target['http_method'].lower()}"]
    if path == "http_target.body":
        if "body" in target:
            return [f"--message-body={target['body'].decode()}"]
        return [] if live is None else ["--clear-message-body"]
    if path == "http_target.headers":
        if live is None:
            return [f"--headers={_dict_flag(target['headers'])}"]
        keep = {k.lower() for k in target["headers"]} | {"user-agent"}
        gone = [k for k in live.http_target.headers if k.lower() not in keep]
        remove = [f"--remove-headers={','.join(gone)}"] if gone else []
        return [*remove, f"--update-headers={_dict_flag(target['headers'])}"]
    return []


def _command(verb: list[str], spec: Spec, flags: list[str]) -> str:
    """A shell-quoted gcloud scheduler command for this spec's job."""
    head = ["gcloud", "scheduler", "jobs", *verb, spec.job.name]
    where = [f"--project={spec.project}", f"--location={spec.region}"]
    return shlex.join([*head, *where, *dict.fromkeys(flags)])


def _no_gcloud(job: dict[str, Any]) -> str | None:
    """gcloud's --http-method has no PATCH (gcp-facts §6): say so instead of a broken command."""
    method = job["http_target"]["http_method"]
    if method in GCLOUD_METHODS:
        return None
    return f"# gcloud cannot set --http-method={method.lower()}; opslib uses the Scheduler API"


def create_command(spec: Spec, job: dict[str, Any]) -> str:
    """The `gcloud scheduler jobs create http` command equivalent to creating the job."""
    flags: list[str] = []
    for path, value in _flat(job).items():
        retry = path.removeprefix("retry_config.")
        if value not in ("", None) and value != RETRY_DEFAULTS.get(retry):
            flags += _flags(path, job, None)
    return _no_gcloud(job) or _command(["create", "http"], spec, flags)


def update_command(
    spec: Spec, job: dict[str, Any], live: scheduler_v1.Job, fields: tuple[str, ...]
) -> str:
    """The `gcloud scheduler jobs update http` command that changes exactly `fields`."""
    flags = [flag for path in fields for flag in _flags(path, job, live)]
    return _no_gcloud(job) or _command(["update", "http"], spec, flags)


def schedule(spec: Spec, clients: Clients | None = None, dry_run: bool = False) -> Plan:
    """Create or update the job so it matches the spec; unchanged specs make no writes."""
    clients = clients or clients_for(spec)
    planned = plan(spec, clients)
    if dry_run or not planned.plan.pending:
        return planned.plan
    if planned.live is None:
        parent = job_path(spec).rsplit("/jobs/", 1)[0]
        _call(spec, clients.scheduler.create_job, parent=parent, job=planned.job)
    else:
        mask = {"paths": list(planned.fields)}
        _call(spec, clients.scheduler.update_job, job=planned.job, update_mask=mask)
    return planned.plan


def _transition(spec: Spec, clients: Clients | None, to: str, dry_run: bool) -> Plan:
    """Pause or resume: Scheduler allows ENABLED -> PAUSED and PAUSED -> ENABLED only."""
    clients = clients or clients_for(spec)
    state = _live_job(spec, clients, required=True).state.name
    verb, want = ("pause", "ENABLED") if to == "PAUSED" else ("resume", "PAUSED")
    if state == to:
        return Plan([_change(spec, "no change", (), f"already {to}")])
    if state != want:
        fix = "run step 4 (schedule) again to repair it" if state == "UPDATE_FAILED" else ""
        what = f"the job is {state}; Scheduler can only {verb} a {want} job"
        raise OpslibError(_where(spec), what, fix)
    if not dry_run:
        fn = clients.scheduler.pause_job if to == "PAUSED" else clients.scheduler.resume_job
        _call(spec, fn, name=job_path(spec))
    command = _command([verb], spec, [])
    return Plan([_change(spec, "update", ("state",), f"{state} -> {to}", command)])


def pause(spec: Spec, clients: Clients | None = None, dry_run: bool = False) -> Plan:
    """Stop the job firing without losing its configuration (updates keep it paused)."""
    return _transition(spec, clients, "PAUSED", dry_run)


def resume(spec: Spec, clients: Clients | None = None, dry_run: bool = False) -> Plan:
    """Let a paused job fire on its cron again."""
    return _transition(spec, clients, "ENABLED", dry_run)


def delete(spec: Spec, clients: Clients | None = None, dry_run: bool = False) -> Plan:
    """Remove the job; a job already gone is no change."""
    clients = clients or clients_for(spec)
    live = _live_job(spec, clients)
    if live is None:
        return Plan([_change(spec, "no change", (), "absent")])
    if not dry_run:  # gone meanwhile is the outcome asked for, hence missing_ok
        _call(spec, clients.scheduler.delete_job, missing_ok=True, name=job_path(spec))
    command = _command(["delete"], spec, ["--quiet"])
    return Plan([_change(spec, "delete", (), f"was {live.state.name}", command)])


def _status(job: scheduler_v1.Job) -> str:
    """The last attempt's outcome as an rpc code name (OK, UNAUTHENTICATED, ...)."""
    if not job.last_attempt_time:
        return "never ran"
    code = job.status.code
    name = code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code)
    return f"{name}: {job.status.message}" if job.status.message else name


def _local(when: datetime | None, zone: str) -> Any:
    """A timestamp on the job's wall clock, NaT when Scheduler has none."""
    return pd.Timestamp(when).tz_convert(cron.zone_info(zone)) if when else pd.NaT


def job_frame(spec: Spec, clients: Clients | None = None) -> pd.DataFrame:
    """The live job in one row: state, when it runs, what it calls and how it last went."""
    live = _live_job(spec, clients or clients_for(spec), required=True)
    zone = _zone(live.time_zone)
    row = {
        "job": spec.job.name,
        "state": live.state.name,
        "schedule": live.schedule,
        "runs": _describe(live.schedule),
        "description": live.description,
        "time_zone": zone,
        "uri": live.http_target.uri,
        "attempt_deadline": g.format_duration(_seconds(live.attempt_deadline) or DEADLINE_DEFAULT),
        "next_run": _local(live.schedule_time, zone),
        "last_attempt": _local(live.last_attempt_time, zone),
        "last_status": _status(live),
    }
    return pd.DataFrame([row])


def next_runs_frame(spec: Spec, count: int = 5, start: datetime | None = None) -> pd.DataFrame:
    """The next run times on the job's wall clock, so people can check the cron means it."""
    zone = spec.schedule.time_zone
    runs = cron.next_runs(spec.schedule.cron, zone, count, start or datetime.now(UTC))
    return pd.DataFrame(
        {
            "run": runs,
            "weekday": [when.strftime("%A") for when in runs],
        }
    )
