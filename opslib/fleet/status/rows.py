"""One status row: an automation's parameters file against what Google has, and its health.

Each service is compared once (`service_row`) and shared by its jobs' rows; `automation_row`
then adds
what its Scheduler job calls (a service route or a Cloud Run job), its schedule on the job's
own wall clock, its last attempt and newest run, its drift and the health word they add up to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pandas as pd

from opslib.fleet.status.drift import (
    Folder,
    alerts_drift,
    job_drift,
    run_job_drift,
    service_drift,
)
from opslib.fleet.status.runs import key_of, run_columns
from opslib.spec import cron, defaults, names
from opslib.spec import cron_report as cron_view
from opslib.steps.deploy.desired import live_routes
from opslib.steps.schedule import last_status

if TYPE_CHECKING:
    from opslib.cloud.session import Session
    from opslib.fleet.load import Fleet
    from opslib.fleet.status.read import Live
    from opslib.spec.model import Spec

EXECUTION_FAILED = "EXECUTION_FAILED"  # run_v2.ExecutionReference.CompletionStatus


@dataclass
class ServiceRow:
    """What every row of one service shares: the live service, its revision, drift, routes."""

    live: Any | None
    revision: str
    drift: list[str]
    routes: list[str] | None  # None: unknown (no service, or not deployed by opslib)
    folder: Folder


def service_row(fleet: Fleet, sessions: list[Session], live: Live) -> ServiceRow:
    """The service as its route jobs ask for it (fleet.load.service_spec) against Google's."""
    from opslib.fleet.load import invokers, service_spec

    folder = Folder(sessions[0].service_dir)
    routed = [s.spec for s in fleet.service_members(sessions[0].spec.service_key)]
    if not routed:  # only Cloud Run jobs built from this folder: no service to compare
        return ServiceRow(None, "", [], None, folder)
    name = names.service(routed[0])
    service = live.services.get(name)
    routes = live_routes(service) if service is not None else None
    members = [f"serviceAccount:{a}" for a in invokers(routed)]
    policy = live.policies.get(name)
    drift = service_drift(service_spec(routed), folder, service, members, policy)
    return ServiceRow(service, serving(service), drift, routes, folder)


@dataclass
class Target:
    """What the Scheduler job calls, as one row needs it: a service route or a Cloud Run job."""

    exists: bool
    revision: str  # the serving revision, or the Cloud Run job's newest execution
    url: str | None  # the service URL step 4 targets (None: no service yet)
    drift: list[str]
    failed: bool  # a Cloud Run job's newest execution failed


def _target(spec: Spec, shared: ServiceRow, live: Live) -> Target:
    """The service route a route job calls, or the Cloud Run job a `runtime: job` starts."""
    from opslib.fleet.load import job_spec

    if spec.job.effective_runtime == "job":
        name = names.run_job(spec)
        run_job = live.run_jobs.get(name)
        execution = run_job.latest_created_execution if run_job is not None else None
        ran = execution is not None and bool(execution.name)
        drift = run_job_drift(job_spec(spec), shared.folder, run_job, live.policies.get(name))
        return Target(
            run_job is not None,
            names.short(execution.name) if ran else "",
            None,
            drift,
            ran and execution.completion_status.name == EXECUTION_FAILED,
        )
    service = shared.live
    url = service.uri if service is not None and service.uri else None
    return Target(service is not None, shared.revision, url, shared.drift, False)


def automation_row(session: Session, shared: ServiceRow, live: Live) -> dict[str, Any]:
    """One automation's row: its schedule, last attempt, newest run, drift and health."""
    spec = session.spec
    target = _target(spec, shared, live)
    job = live.jobs.get(names.scheduler_job(spec))
    expr = " ".join((job.schedule if job is not None else spec.schedule.cron).split())
    zone = defaults.time_zone(job.time_zone if job is not None else spec.schedule.time_zone)
    state = "missing" if job is None or not target.exists else _state(job)
    ko, en = describe(expr)
    drift = [*job_drift(spec, target.url, job), *target.drift]
    if spec.alerts is not None:  # what `opslib alerts` would change, from its own plan
        found = live.monitoring.get((spec.target, spec.project), ([], []))
        drift += alerts_drift(session, *found)
    last_attempt = job.last_attempt_time if job is not None else None
    run = run_columns(live.runs.get(key_of(spec), []))
    row = {
        "service": spec.service,
        "job": spec.job.name,
        "state": state,
        "cron": expr,
        "cron_ko": ko,
        "cron_en": en,
        "time_zone": zone,
        "next_run": _next_run(job, expr, zone) if state == "enabled" else pd.NaT,
        "last_attempt": _local(last_attempt, zone),
        "last_status": last_status(job),
        "revision": target.revision,
        "drift": "; ".join(drift),
        "incidents": incidents(live.incidents.get((spec.job.name, spec.region), []), zone),
        **run,
        "last_run": _local(run["last_run"], zone),
    }
    attempt_failed = last_attempt is not None and job.status.code != 0  # type: ignore[union-attr]
    row["health"] = health(row, attempt_failed or target.failed)
    return row


def incidents(alerts: list[dict[str, Any]], zone: str) -> str:
    """Open incidents as `failed since 2026-12-08 09:00 KST`, on the job's clock."""
    parts = []
    for alert in sorted(alerts, key=lambda a: a.get("openTime", "")):
        kind = alert.get("policy", {}).get("userLabels", {}).get("opslib_alert", "alert")
        since = _local(pd.Timestamp(alert["openTime"]).to_pydatetime(), zone)
        parts.append(f"{kind} since {since.strftime('%Y-%m-%d %H:%M %Z')}")
    return "; ".join(parts)


def health(row: dict[str, Any], attempt_failed: bool) -> str:
    """The worst that applies to a row: missing > failed > drifted > paused > ok."""
    state = row["state"]
    if state == "missing":
        return "missing"
    ran_badly = row["run_status"] == "error" or (row["errors"] or 0) > 0
    if attempt_failed or ran_badly or state in ("disabled", "update_failed"):
        return "failed"
    if row["drift"]:
        return "drifted"
    return "paused" if state == "paused" else "ok"


@lru_cache(maxsize=4096)
def describe(expr: str) -> tuple[str, str]:
    """Korean and English sentences for a cron, cached: fifty jobs often share a handful."""
    try:
        return cron_view.describe_ko(expr), cron_view.describe_en(expr)
    except Exception:  # legacy App Engine schedules ("every 24 hours") and the like
        return "", ""


def _state(job: Any) -> str:
    """Scheduler's state word in lower case: enabled, paused, disabled, update_failed."""
    return str(job.state.name).lower()


def _local(when: datetime | None, zone: str) -> Any:
    """A time on the job's wall clock, whole seconds; NaT when there is none."""
    if when is None:
        return pd.NaT
    return pd.Timestamp(when.astimezone(cron.zone_info(zone)).replace(microsecond=0))


def _next_run(job: Any, expr: str, zone: str) -> Any:
    """Scheduler's own next time; computed from the cron only when it gives none."""
    when = job.schedule_time if job is not None else None
    if when is not None:
        return _local(when, zone)
    try:
        return _local(cron.next_runs(expr, zone, 1)[0], zone)
    except (ValueError, KeyError, IndexError):  # a schedule cronsim cannot read
        return pd.NaT


def serving(service: Any) -> str:
    """The revision taking the traffic (each with its percent when traffic is split)."""
    if service is None:
        return ""
    latest = names.short(service.latest_ready_revision)
    shares = [(t.revision or latest, t.percent) for t in service.traffic_statuses if t.percent]
    if len(shares) == 1:
        return shares[0][0]
    return ", ".join(f"{name} {percent}%" for name, percent in shares) or latest
