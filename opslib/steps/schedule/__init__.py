"""Step 4: the Cloud Scheduler HTTP job that calls the service's route on its cron (OIDC), or
starts a Cloud Run job through the Run Admin API (OAuth).

Plan, then apply: `plan` only reads (the live Cloud Run service for its URL and request
timeout, or the live Cloud Run job, then the Scheduler job), checks the deadline chain against
that live service and diffs desired and live field by field (`desired.job_diff`, which is also
what `opslib status` shows as drift), so an unchanged spec makes no mutating call. Every
change carries the gcloud command that would do the same (`gcloud`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pandas as pd
from google.cloud import run_v2, scheduler_v1

from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.cloud.errors import call
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Plan
from opslib.spec import cron, defaults, names
from opslib.spec import rules as g
from opslib.spec.model import Spec
from opslib.steps.schedule.desired import SECRET_FIELDS, desired_job, flat, job_diff
from opslib.steps.schedule.gcloud import command, create_command, update_command

__all__ = [
    "SECRET_FIELDS",
    "Planned",
    "check_deadlines",
    "create_command",
    "delete",
    "desired_job",
    "job_diff",
    "job_frame",
    "next_runs_frame",
    "pause",
    "plan",
    "resume",
    "schedule",
    "update_command",
]

STEP = "schedule"
FIX_STEP_3 = "run step 3 (deploy: notebooks/03_deploy) first, then schedule again"


class Planned(NamedTuple):
    """A plan plus what applying it needs: the desired job, the live one, the changed fields."""

    plan: Plan
    job: dict[str, Any]
    live: scheduler_v1.Job | None
    fields: tuple[str, ...]


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


def _call(spec: Spec, fn: Callable[..., Any], *, missing_ok: bool = False, **kwargs: Any) -> Any:
    """One API call; Google's errors become opslib's (a missing resource None if ok)."""
    return call(fn, _where(spec), "scheduler", missing_ok=missing_ok, **kwargs)


def request_timeout(service: run_v2.Service) -> float:
    """The live service's request timeout (Google's default when its template leaves it unset)."""
    return service.template.timeout.total_seconds() or defaults.REQUEST_TIMEOUT


def _live_service(spec: Spec, clients: Clients) -> run_v2.Service:
    """The deployed Cloud Run service; the job cannot exist without its URL."""
    service = call(
        clients.run.get_service, _where(spec), "run", missing_ok=True, name=names.service(spec)
    )
    if service is None or not service.uri:
        state = "does not exist" if service is None else "has no URL yet"
        raise OpslibError(
            _where(spec),
            f"Cloud Run service {spec.service} {state} in {spec.project}/{spec.region}, "
            "so the job has no URL to call",
            FIX_STEP_3,
        )
    return service


def _live_cloud_run_job(spec: Spec, clients: Clients) -> run_v2.Job:
    """The Cloud Run job the Scheduler job starts; it must exist before it is scheduled."""
    live = call(
        clients.jobs.get_job, _where(spec), "run", missing_ok=True, name=names.run_job(spec)
    )
    if live is None:
        raise OpslibError(
            _where(spec),
            f"Cloud Run job {spec.job.name} does not exist in {spec.project}/{spec.region}",
            FIX_STEP_3,
        )
    return live


def _live_job(spec: Spec, clients: Clients, required: bool = False) -> scheduler_v1.Job | None:
    """The job as Scheduler has it, or None when it does not exist (an error if required)."""
    name = names.scheduler_job(spec)
    live = _call(spec, clients.scheduler.get_job, missing_ok=True, name=name)
    if live is None and required:
        what = f"there is no Scheduler job {name}"
        raise OpslibError(_where(spec), what, "create it first: run step 4 (schedule)")
    return live


def _change(spec: Spec, action: str, fields: tuple = (), detail: str = "", cmd: str = "") -> Change:
    """One Change for this spec's job."""
    return Change(STEP, names.scheduler_job(spec), action, fields, detail, cmd)  # type: ignore[arg-type]


def plan(spec: Spec, clients: Clients) -> Planned:
    """Read the service and the job, check deadlines, and say what would change; no writes."""
    if spec.job.effective_runtime == "job":  # Scheduler only starts the execution
        _live_cloud_run_job(spec, clients)
        url = None
    else:
        service = _live_service(spec, clients)
        check_deadlines(spec, request_timeout(service))
        url = service.uri
    job = desired_job(spec, url)
    live = _live_job(spec, clients)
    if live is None:
        change = _change(spec, "create", (), _summary(job), create_command(spec, job))
        return Planned(Plan([change]), job, None, ())
    d = job_diff(spec, url, live)
    fields = d.fields
    if not fields and live.state == scheduler_v1.Job.State.UPDATE_FAILED:
        fields = tuple(flat(job))  # Scheduler's advice after a failed update: repeat it
    if not fields:
        change = _change(spec, "no change", (), f"state {live.state.name}")
        return Planned(Plan([change]), job, live, ())
    detail = d.detail() or "repeats the failed update (state UPDATE_FAILED)"
    change = _change(spec, "update", fields, detail, update_command(spec, job, live, fields))
    return Planned(Plan([change]), job, live, fields)


def _summary(job: dict[str, Any]) -> str:
    """What the job will do, for people: when, in which zone, what it calls."""
    target, deadline = job["http_target"], job["attempt_deadline"].total_seconds()
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


def schedule(spec: Spec, clients: Clients, dry_run: bool = False) -> Plan:
    """Create or update the job so it matches the spec; unchanged specs make no writes."""
    planned = plan(spec, clients)
    if dry_run or not planned.plan.pending:
        return planned.plan
    if planned.live is None:
        parent = names.location(spec)
        _call(spec, clients.scheduler.create_job, parent=parent, job=planned.job)
    else:
        mask = {"paths": list(planned.fields)}
        _call(spec, clients.scheduler.update_job, job=planned.job, update_mask=mask)
    return planned.plan


def _transition(spec: Spec, clients: Clients, to: str, dry_run: bool) -> Plan:
    """Pause or resume: Scheduler allows ENABLED -> PAUSED and PAUSED -> ENABLED only."""
    live = _live_job(spec, clients, required=True)
    assert live is not None
    state = live.state.name
    verb, want = ("pause", "ENABLED") if to == "PAUSED" else ("resume", "PAUSED")
    if state == to:
        return Plan([_change(spec, "no change", (), f"already {to}")])
    if state != want:
        fix = "run step 4 (schedule) again to repair it" if state == "UPDATE_FAILED" else ""
        what = f"the job is {state}; Scheduler can only {verb} a {want} job"
        raise OpslibError(_where(spec), what, fix)
    if not dry_run:
        fn = clients.scheduler.pause_job if to == "PAUSED" else clients.scheduler.resume_job
        _call(spec, fn, name=names.scheduler_job(spec))
    return Plan(
        [_change(spec, "update", ("state",), f"{state} -> {to}", command([verb], spec, []))]
    )


def pause(spec: Spec, clients: Clients, dry_run: bool = False) -> Plan:
    """Stop the job firing without losing its configuration (updates keep it paused)."""
    return _transition(spec, clients, "PAUSED", dry_run)


def resume(spec: Spec, clients: Clients, dry_run: bool = False) -> Plan:
    """Let a paused job fire on its cron again."""
    return _transition(spec, clients, "ENABLED", dry_run)


def delete(spec: Spec, clients: Clients, dry_run: bool = False) -> Plan:
    """Remove the job; a job already gone is no change."""
    live = _live_job(spec, clients)
    if live is None:
        return Plan([_change(spec, "no change", (), "absent")])
    if not dry_run:  # gone meanwhile is the outcome asked for, hence missing_ok
        _call(spec, clients.scheduler.delete_job, missing_ok=True, name=names.scheduler_job(spec))
    gcloud = command(["delete"], spec, ["--quiet"])
    return Plan([_change(spec, "delete", (), f"was {live.state.name}", gcloud)])


def last_status(job: scheduler_v1.Job | None) -> str:
    """The last attempt's outcome as an rpc code name (OK, UNAUTHENTICATED: ...), or why none."""
    if job is None:
        return "no job"
    if not job.last_attempt_time:
        return "never ran"
    return codes.status_text(job.status.code, job.status.message)


def _local(when: datetime | None, zone: str) -> Any:
    """A timestamp on the job's wall clock, NaT when Scheduler has none."""
    return pd.Timestamp(when).tz_convert(cron.zone_info(zone)) if when else pd.NaT


def job_frame(spec: Spec, clients: Clients) -> pd.DataFrame:
    """The live job in one row: state, when it runs, what it calls and how it last went."""
    live = _live_job(spec, clients, required=True)
    assert live is not None
    values = flat(live)
    zone = str(values["time_zone"])
    row = {
        "job": spec.job.name,
        "state": live.state.name,
        "schedule": live.schedule,
        "runs": _describe(live.schedule),
        "description": live.description,
        "time_zone": zone,
        "uri": live.http_target.uri,
        "attempt_deadline": values["attempt_deadline"],
        "next_run": _local(live.schedule_time, zone),
        "last_attempt": _local(live.last_attempt_time, zone),
        "last_status": last_status(live),
    }
    return pd.DataFrame([row])


def next_runs_frame(
    spec: Spec, count: int = cron.NEXT_RUNS, start: datetime | None = None
) -> pd.DataFrame:
    """The next run times on the job's wall clock, so people can check the cron means it."""
    zone = spec.schedule.time_zone
    runs = cron.next_runs(spec.schedule.cron, zone, count, start or datetime.now(UTC))
    return pd.DataFrame({"run": runs, "weekday": [when.strftime("%A") for when in runs]})
