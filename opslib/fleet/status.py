"""`opslib status`: every automation of a fleet in one table, the page an operator opens daily.

It only reads, in a number of calls that does not grow with the number of jobs: per location
(project, region) one Scheduler `jobs:list`, plus one Cloud Run `services:list` when route jobs
run there and one Cloud Run `jobs:list` when `runtime: job` automations do; and one Logging
`entries:list` per target over the whole fleet, filtered down to the jobs' own end lines
(`status`, `processed`, `errors`, `duration_ms`: service/scripts/common/logs.py and task.py).
The calls run side by side, so on Google Cloud, where each is a network round trip, the table
costs about the slowest of them. Cloud Logging allows about 60 `entries:list` calls a minute
per project: a status a minute fits, however many jobs. Only when the newest 1,000 end lines
miss a job is a further page read (at most `LOG_PAGES` in all). benchmarks/fleet_status.py
times it for 50 automations against one jobs:list plus one entries:list (official clients).

One row per automation, columns `COLUMNS`:
- service, job, health (below), state: enabled, paused, disabled, update_failed (Scheduler's
  word), or missing when the Scheduler job or what it calls (the Cloud Run service; for
  `runtime: job`, the Cloud Run job) does not exist;
- cron with cron_ko / cron_en, time_zone: the live job's (what actually fires); the file's when
  the job is missing;
- next_run: Scheduler's scheduleTime on the job's wall clock (from the cron when Scheduler gives
  none); NaT when the job will not fire (paused, disabled, missing);
- last_attempt, last_status: Scheduler's last attempt (OK, INTERNAL: message, or never ran);
- last_run, run_status, duration_s, processed, errors: the job's newest run in the logs of the
  window `since` (a Cloud Run job's: its newest execution, each task's last attempt added up);
  empty when it has none there;
- revision: the revision serving the service (each with its share when traffic is split); for
  a Cloud Run job, its newest execution;
- drift: each field where the parameters file and Google differ, as `field: live -> file`,
  joined by "; ": the Scheduler job's cron, time_zone, attempt_deadline and uri; the service's
  memory, cpu, timeout, min_instances and secrets (as all its route jobs ask for them) and the
  job's route when the live revision does not serve it; a Cloud Run job's memory, cpu,
  task_timeout, max_retries, tasks, parallelism and secrets.

Health, one word per row, the worst that applies:
  missing  no Scheduler job, or nothing for it to call: the automation does not run;
  failed   Scheduler's last attempt was not OK, the newest run in the logs ended in error or
           counted errors (verify's rule), a Cloud Run job's newest execution failed, or
           Scheduler disabled the job or failed to update it;
  drifted  the file and Google differ (run steps 3-4 to apply the file, or fix the file);
  paused   someone paused the job (opslib schedule PARAMS pause, deploy --prune): not a fault;
  ok       none of the above.
`healthy()` holds when every row is ok or paused; `opslib status` exits 0 then, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opslib.core.errors import BadInput, OpslibError
from opslib.spec import cron
from opslib.spec import cron_report as cron_view
from opslib.spec import rules as g
from opslib.steps import logs

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from opslib.cloud.clients import Clients
    from opslib.cloud.session import Session
    from opslib.fleet.load import Fleet
    from opslib.spec.model import Spec

COLUMNS = (
    "service",
    "job",
    "health",
    "state",
    "cron",
    "cron_ko",
    "cron_en",
    "time_zone",
    "next_run",
    "last_attempt",
    "last_status",
    "last_run",
    "run_status",
    "duration_s",
    "processed",
    "errors",
    "revision",
    "drift",
)
HEALTHY = ("ok", "paused")
Key = tuple[Any, ...]  # (project, region, service or Cloud Run job, job): a line's automation
EXECUTION_LABEL = "run.googleapis.com/execution_name"  # on a Cloud Run job's log entries
TASK_LABEL = "run.googleapis.com/task_index"
LOG_PAGES = 3  # entries:list calls at most, only while some job has no end line yet
FILTER_MAX = 15_000  # Cloud Logging takes 20,000 characters; the job clause goes first
RUN_TIMEOUT_DEFAULT = 300.0  # Cloud Run's request timeout when the template leaves it unset
DEADLINE_DEFAULT = 180.0  # Scheduler's HTTP attempt deadline when unset
EXECUTION_FAILED = 2  # run_v2.ExecutionReference.CompletionStatus.EXECUTION_FAILED
COLOURS = {"failed": "#f8d7da", "missing": "#f8d7da", "drifted": "#ffe8a1", "paused": "#e9ecef"}


@dataclass
class Live:
    """What Google has, by full name, and each automation's newest run in the logs."""

    jobs: dict[str, Any] = field(default_factory=dict)  # Scheduler jobs
    services: dict[str, Any] = field(default_factory=dict)  # Cloud Run services
    run_jobs: dict[str, Any] = field(default_factory=dict)  # Cloud Run jobs (runtime: job)
    runs: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)  # end lines, newest first


def status(
    fleet: Fleet, since: str | timedelta | datetime = "24h", now: datetime | None = None
) -> pd.DataFrame:
    """One row per automation: how it is scheduled, how it last ran, and where it drifted."""
    live = read_live(fleet, window_start(since, now))
    services = {key: _service_row(sessions, live) for key, sessions in fleet.services.items()}
    rows = [_row(s, services[s.spec.service_key], live) for s in fleet.sessions]
    return table(rows)


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as one DataFrame, built column by column with fixed dtypes.

    Times stay objects (each row is on its own job's clock), counts are nullable Int64.
    Per-row Python and one construction: for fifty rows, each pandas operation's fixed cost
    is what a vectorised pass would add.
    """
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in COLUMNS}
    for name in ("next_run", "last_attempt", "last_run"):
        columns[name] = pd.Series(columns[name], dtype=object)
    for name in ("processed", "errors"):
        columns[name] = pd.array(columns[name], dtype="Int64")
    columns["duration_s"] = np.array(columns["duration_s"], dtype="float64")
    return pd.DataFrame(columns)


def window_start(since: str | timedelta | datetime, now: datetime | None = None) -> datetime:
    """The start of the log window: a time, or a span (gcloud's --freshness: 1h, 24h, 7d) ago."""
    if isinstance(since, datetime):
        return since
    span = since if isinstance(since, timedelta) else logs.parse_freshness(since)
    return (now or datetime.now(UTC)) - span


def healthy(frame: pd.DataFrame) -> bool:
    """True when every automation is ok or deliberately paused: the exit code of a morning cron."""
    return bool(frame["health"].isin(HEALTHY).all())


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


# --- reading: a fixed number of calls, side by side -------------------------------------------


def read_live(fleet: Fleet, since: datetime) -> Live:
    """Per location its Scheduler jobs, and its Cloud Run services and/or jobs as the fleet's
    runtimes need; per target the end lines. All calls at once."""
    locations: dict[tuple[str, str, str], tuple[Clients, set[str]]] = {}
    targets: dict[str, list[Session]] = {}
    for session in fleet.sessions:
        spec = session.spec
        where = (spec.target, spec.project, spec.region)
        clients, runtimes = locations.setdefault(where, (fleet.clients(session), set()))
        runtimes.add(spec.job.effective_runtime)
        targets.setdefault(spec.target, []).append(session)
    calls: list[tuple[str, Callable[[], Any]]] = []
    for (_, project, region), (clients, runtimes) in locations.items():
        parent = f"projects/{project}/locations/{region}"
        calls.append(("jobs", partial(list_jobs, clients, parent)))
        if "service" in runtimes:
            calls.append(("services", partial(list_services, clients, parent)))
        if "job" in runtimes:
            calls.append(("run_jobs", partial(list_run_jobs, clients, parent)))
    for sessions in targets.values():
        clients = fleet.clients(sessions[0])
        calls.append(("runs", partial(read_runs, clients, [s.spec for s in sessions], since)))
    built: dict[int, tuple[Clients, set[str]]] = {}
    for clients, runtimes in locations.values():  # one Clients may serve several locations
        built.setdefault(id(clients), (clients, set()))[1].update(runtimes)
    for clients, runtimes in built.values():
        _build(clients, runtimes)
    live = Live()
    for (kind, _), found in zip(calls, _concurrently([c for _, c in calls]), strict=True):
        getattr(live, kind).update(found)
    return live


def _build(clients: Clients, runtimes: set[str]) -> None:
    """Create the lazy clients once, here, so that the threads only use them."""
    names = ["scheduler", "logging"]
    names += ["run"] if "service" in runtimes else []
    names += ["jobs"] if "job" in runtimes else []
    for name in names:
        getattr(clients, name)


@cache
def _pool() -> ThreadPoolExecutor:
    """Threads kept for the next status (starting them is a tenth of a local status' time)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="opslib-status")


def _concurrently(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each call in its own thread; Google's errors become one line that says what to grant."""
    from google.api_core import exceptions

    try:
        futures = [_pool().submit(task) for task in tasks]
        return [future.result() for future in futures]
    except exceptions.GoogleAPICallError as exc:
        raise OpslibError(
            "status",
            f"{type(exc).__name__} ({exc.code}): {exc.message}",
            "status reads with roles/cloudscheduler.viewer, roles/run.viewer and "
            "roles/logging.viewer on the project: grant them, or check the target",
        ) from None
    except OSError as exc:  # requests' ConnectionError and the like: nothing answered
        raise OpslibError(
            "status",
            f"cannot reach the target: {exc}",
            "on local, start localcloud (opslib localcloud start --detach); on gcp, check "
            "the network",
        ) from None


def list_jobs(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Scheduler job of a location in one call (500 a page, Scheduler's maximum).

    Kept as raw protobuf messages: reading their fields is several times cheaper than
    through proto-plus, which is most of the table's own cost.
    """
    request = {"parent": parent, "page_size": 500}
    return {job.name: type(job).pb(job) for job in clients.scheduler.list_jobs(request=request)}


def list_services(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Cloud Run service of a location (raw protobuf messages, as for the jobs)."""
    return {s.name: type(s).pb(s) for s in clients.run.list_services(parent=parent)}


def list_run_jobs(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Cloud Run job of a location (only asked when the fleet has `runtime: job` there)."""
    from google.api_core import exceptions

    try:
        return {j.name: type(j).pb(j) for j in clients.jobs.list_jobs(parent=parent)}
    except exceptions.NotFound:  # an API without jobs (an emulator) has none of them
        return {}


def log_filter(specs: Sequence[Spec], since: datetime) -> str:
    """The jobs' end lines (they alone carry duration_ms) since `since`: on the fleet's
    services for route jobs, from the fleet's Cloud Run jobs for `runtime: job`."""
    stamp = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    routed = [s for s in specs if s.job.effective_runtime == "service"]
    runs = [s.job.name for s in specs if s.job.effective_runtime == "job"]
    jobs = f" AND jsonPayload.job={_any_of(s.job.name for s in routed)}"
    parts = []
    if routed:
        services = _any_of(s.service for s in routed)
        parts.append(
            f'resource.type="cloud_run_revision" AND resource.labels.service_name={services}{jobs}'
        )
    if runs:
        parts.append(f'resource.type="cloud_run_job" AND resource.labels.job_name={_any_of(runs)}')
    where = parts[0] if len(parts) == 1 else " OR ".join(f"({p})" for p in parts)
    text = f"{where if len(parts) == 1 else f'({where})'} AND jsonPayload.duration_ms:* AND "
    text += f'timestamp>="{stamp}"'
    return text if len(text) <= FILTER_MAX else text.replace(jobs, "")


def _any_of(values: Any) -> str:
    return "(" + " OR ".join(logs.quote(v) for v in sorted(set(values))) + ")"


def read_runs(clients: Clients, specs: Sequence[Spec], since: datetime) -> dict[Key, list]:
    """Each job's newest run: its end line (a Cloud Run job's: its newest execution's lines),
    in one call unless a job is still missing from the page.

    Only these few lines are read (not `logs.entries_frame` over the page, whose fixed cost
    is most of the table's for a fleet of fifty); `status` turns them into columns at once.
    """
    body = {
        "resourceNames": sorted({f"projects/{s.project}" for s in specs}),
        "filter": log_filter(specs, since),
        "orderBy": "timestamp desc",
        "pageSize": logs.PAGE_SIZE,
    }
    wanted = {key_of(s) for s in specs}
    newest: dict[Key, list[dict[str, Any]]] = {}
    for _ in range(LOG_PAGES):
        page = clients.logging._connection.api_request(
            method="POST", path="/entries:list", data=body
        )
        for entry in page.get("entries") or ():
            _keep(newest, entry)
        token = page.get("nextPageToken")
        if not token or wanted <= newest.keys():
            break
        body = {**body, "pageToken": token}
    return newest


def _keep(newest: dict[Key, list[dict[str, Any]]], entry: dict[str, Any]) -> None:
    """Lines come newest first: a job's first line is its last run; a Cloud Run job's other
    lines of that same execution (its other tasks) join it."""
    lines = newest.setdefault(_key(entry), [])
    execution = _entry_labels(entry).get(EXECUTION_LABEL)
    if not lines or (execution and _entry_labels(lines[0]).get(EXECUTION_LABEL) == execution):
        lines.append(entry)


def key_of(spec: Spec) -> Key:
    """Where a spec's end lines come from: its service, or its own Cloud Run job."""
    resource = spec.service if spec.job.effective_runtime == "service" else spec.job.name
    return (spec.project, spec.region, resource, spec.job.name)


def _labels(entry: Any) -> dict[str, Any]:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    labels = resource.get("labels") if isinstance(resource, dict) else None
    return labels if isinstance(labels, dict) else {}


def _payload(entry: Any) -> dict[str, Any]:
    payload = entry.get("jsonPayload") if isinstance(entry, dict) else None
    return payload if isinstance(payload, dict) else {}


def _entry_labels(entry: Any) -> dict[str, Any]:
    labels = entry.get("labels") if isinstance(entry, dict) else None
    return labels if isinstance(labels, dict) else {}


def _key(entry: Any) -> Key:
    labels = _labels(entry)
    return (
        labels.get("project_id"),
        labels.get("location"),
        labels.get("service_name") or labels.get("job_name"),
        _payload(entry).get("job"),
    )


def _run(lines: list[dict[str, Any]], zone: str) -> dict[str, Any]:
    """The run columns from a run's end lines (the fields service/scripts/common/logs.py
    writes): one line for a route, each task's newest for a Cloud Run job (summed; the
    slowest task's duration; error when any task's last attempt failed)."""
    tasks: dict[object, dict[str, Any]] = {}
    for entry in lines:
        tasks.setdefault(_entry_labels(entry).get(TASK_LABEL), entry)
    payloads = [_payload(e) for e in tasks.values()]
    statuses = [p.get("status") for p in payloads if isinstance(p.get("status"), str)]
    durations = [d for p in payloads if (d := _number(p.get("duration_ms"))) is not None]
    return {
        "last_run": _local(_parse_time(lines[0].get("timestamp") if lines else None), zone),
        "run_status": "error" if "error" in statuses else (statuses[0] if statuses else None),
        "duration_s": max(durations) / 1000 if durations else None,
        "processed": _sum(p.get("processed") for p in payloads),
        "errors": _sum(p.get("errors") for p in payloads),
    }


def _sum(values: Iterable[object]) -> int | None:
    """The whole numbers among `values` added up; None when there is none."""
    counts = [n for v in values if (n := _whole(v)) is not None]
    return sum(counts) if counts else None


def _parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp (nanoseconds cut to micro), None when absent or unreadable."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _number(value: object) -> float | None:
    """A JSON number (or an int64 sent as a string) as a finite float, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _whole(value: object) -> int | None:
    """A count: whole numbers only (JSON numbers arrive as doubles, int64 as strings)."""
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


# --- one row: the file against what Google has -----------------------------------------------


@dataclass
class ServiceRow:
    """What every row of one service shares: the live service, its revision, drift, routes."""

    live: Any | None
    revision: str
    drift: list[str]
    routes: list[str] | None  # None: unknown (no service, or not deployed by opslib)


def _service_row(sessions: list[Session], live: Live) -> ServiceRow:
    """The service as its route jobs ask for it (fleet.service_spec) against Google's."""
    from opslib.fleet.load import service_spec
    from opslib.steps.deploy.preflight import live_routes
    from opslib.steps.deploy.service import service_name

    routed = [s.spec for s in sessions if s.spec.job.effective_runtime == "service"]
    if not routed:  # only Cloud Run jobs built from this folder: no service to compare
        return ServiceRow(None, "", [], None)
    service = live.services.get(service_name(routed[0]))
    routes = live_routes(service) if service is not None else None
    drift = service_drift(service_spec(routed), service)
    return ServiceRow(service, serving(service), drift, routes)


@dataclass
class Target:
    """What the Scheduler job calls, as one row needs it: a service route or a Cloud Run job."""

    exists: bool
    revision: str  # the serving revision, or the Cloud Run job's newest execution
    uris: list[str]  # the URIs the Scheduler job may call, the one step 4 writes first
    drift: list[str]
    failed: bool  # a Cloud Run job's newest execution failed


def _target(spec: Spec, shared: ServiceRow, live: Live) -> Target:
    """The service route a route job calls, or the Cloud Run job a `runtime: job` starts."""
    from opslib.steps.deploy.job import job_name
    from opslib.steps.schedule import run_job_url

    if spec.job.effective_runtime == "job":
        run_job = live.run_jobs.get(job_name(spec))
        execution = run_job.latest_created_execution if run_job is not None else None
        return Target(
            run_job is not None,
            execution.name.rsplit("/", 1)[-1] if execution is not None else "",
            [run_job_url(spec)],
            run_job_drift(spec, run_job),
            execution is not None and execution.completion_status == EXECUTION_FAILED,
        )
    service, route = shared.live, spec.job.route
    bases = [u.rstrip("/") for u in [service.uri, *service.urls] if u] if service else []
    drift = [*shared.drift, *route_drift(spec, shared.routes)]
    return Target(service is not None, shared.revision, [b + route for b in bases], drift, False)


def _row(session: Session, shared: ServiceRow, live: Live) -> dict[str, Any]:
    from opslib.steps.schedule import job_path

    spec = session.spec
    target = _target(spec, shared, live)
    job = live.jobs.get(job_path(spec))
    expr = _cron(job.schedule if job is not None else spec.schedule.cron)
    zone = _zone(job.time_zone if job is not None else spec.schedule.time_zone)
    state = "missing" if job is None or not target.exists else _state(job)
    ko, en = describe(expr)
    drift = [*job_drift(spec, job, target.uris), *target.drift]
    last_attempt = _time(job, "last_attempt_time")
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
        "last_status": _attempt(job),
        "revision": target.revision,
        "drift": "; ".join(drift),
        **_run(live.runs.get(key_of(spec), []), zone),
    }
    attempt_failed = last_attempt is not None and job.status.code != 0
    row["health"] = health(row, attempt_failed or target.failed)
    return row


@lru_cache(maxsize=4096)
def describe(expr: str) -> tuple[str, str]:
    """Korean and English sentences for a cron, cached: fifty jobs often share a handful."""
    try:
        return cron_view.describe_ko(expr), cron_view.describe_en(expr)
    except Exception:  # legacy App Engine schedules ("every 24 hours") and the like
        return "", ""


def _cron(expr: str) -> str:
    return " ".join(expr.split())


def _zone(name: str) -> str:
    """Scheduler treats no zone, `utc`, `UTC` and `Etc/UTC` alike."""
    return "Etc/UTC" if name.lower() in ("", "utc", "etc/utc") else name


def _state(job: Any) -> str:
    """Scheduler's state word in lower case: enabled, paused, disabled, update_failed."""
    from google.cloud.scheduler_v1 import Job

    return Job.State(job.state).name.lower()


def _time(message: Any, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime, None when unset (or no message)."""
    if message is None or not message.HasField(name):
        return None
    return getattr(message, name).ToDatetime(tzinfo=UTC)


def _seconds(message: Any, name: str) -> float:
    """A Duration field in seconds, 0 when unset."""
    if not message.HasField(name):
        return 0.0
    value = getattr(message, name)
    return value.seconds + value.nanos / 1e9


def _local(when: datetime | None, zone: str) -> Any:
    """A time on the job's wall clock, whole seconds; NaT when there is none."""
    if when is None:
        return pd.NaT
    return pd.Timestamp(when.astimezone(cron.zone_info(zone)).replace(microsecond=0))


def _next_run(job: Any, expr: str, zone: str) -> Any:
    """Scheduler's own next time; computed from the cron only when it gives none."""
    when = _time(job, "schedule_time")
    if when is not None:
        return _local(when, zone)
    try:
        return _local(cron.next_runs(expr, zone, 1)[0], zone)
    except (ValueError, KeyError, IndexError):  # a schedule cronsim cannot read
        return pd.NaT


def _attempt(job: Any) -> str:
    """The last attempt's outcome as an rpc code name (OK, INTERNAL: ...), or why there is none."""
    from google.rpc import code_pb2

    if job is None:
        return "no job"
    if not job.HasField("last_attempt_time"):
        return "never ran"
    code = job.status.code
    name = code_pb2.Code.Name(code) if code in code_pb2.Code.values() else str(code)
    return f"{name}: {job.status.message}" if job.status.message else name


def serving(service: Any) -> str:
    """The revision taking the traffic (each with its percent when traffic is split)."""
    if service is None:
        return ""
    latest = service.latest_ready_revision.rsplit("/", 1)[-1]
    shares = [(t.revision or latest, t.percent) for t in service.traffic_statuses if t.percent]
    if len(shares) == 1:
        return shares[0][0]
    return ", ".join(f"{name} {percent}%" for name, percent in shares) or latest


def _changes(pairs: Sequence[tuple[str, object, object]]) -> list[str]:
    """`field: live -> file` for each pair that differs."""
    return [f"{name}: {live!r} -> {file!r}" for name, live, file in pairs if live != file]


def job_drift(spec: Spec, job: Any, uris: Sequence[str]) -> list[str]:
    """The Scheduler job's fields step 4 would change: cron, time zone, deadline, target URL
    (one of `uris`; none known when the service is missing)."""
    if job is None:
        return []
    s, fmt = spec.schedule, g.format_duration
    deadline = _seconds(job, "attempt_deadline") or DEADLINE_DEFAULT
    pairs: list[tuple[str, object, object]] = [
        ("cron", _cron(job.schedule), _cron(s.cron)),
        ("time_zone", _zone(job.time_zone), _zone(s.time_zone)),
        ("attempt_deadline", fmt(deadline), fmt(s.attempt_deadline)),
    ]
    if uris and job.http_target.uri not in uris:
        pairs.append(("uri", job.http_target.uri, uris[0]))
    return _changes(pairs)


def service_drift(spec: Spec, service: Any) -> list[str]:
    """The service's fields that step 3 would change, `spec` being what all its jobs ask."""
    if service is None:
        return []
    template, d = service.template, spec.deploy
    limits = template.containers[0].resources.limits if template.containers else {}
    timeout = _seconds(template, "timeout") or RUN_TIMEOUT_DEFAULT
    return _changes(
        [
            ("memory", _memory(limits.get("memory", "512Mi")), d.memory_text),
            ("cpu", _cpu(limits.get("cpu", "1")), _cpu(d.cpu)),
            ("timeout", g.format_duration(timeout), g.format_duration(d.timeout)),
            ("min_instances", template.scaling.min_instance_count, d.min_instances),
            ("secrets", _live_secrets(template), _spec_secrets(spec)),
        ]
    )


def run_job_drift(spec: Spec, run_job: Any) -> list[str]:
    """The Cloud Run job's fields step 3 would change (its own resources, tasks and secrets)."""
    if run_job is None:
        return []
    execution, job, d = run_job.template, spec.job, spec.deploy
    task = execution.template
    limits = task.containers[0].resources.limits if task.containers else {}
    timeout = g.format_duration(_seconds(task, "timeout") or 600)  # Cloud Run's default: 10 min
    return _changes(
        [
            ("memory", _memory(limits.get("memory", "512Mi")), d.memory_text),
            ("cpu", _cpu(limits.get("cpu", "1")), _cpu(d.cpu)),
            ("task_timeout", timeout, g.format_duration(job.effective_task_timeout)),
            ("max_retries", task.max_retries, job.max_retries),
            ("tasks", execution.task_count, job.tasks),
            ("parallelism", execution.parallelism, job.parallelism),
            ("secrets", _live_secrets(task), _spec_secrets(spec)),
        ]
    )


def route_drift(spec: Spec, routes: list[str] | None) -> list[str]:
    """The job's route, when the live revision recorded its routes and this one is not there."""
    if routes is None or spec.job.route in routes:
        return []
    return [f"route: not served -> {spec.job.route!r}"]


def _memory(text: object) -> str:
    try:
        return g.format_memory(g.parse_memory(text))
    except g.RuleBroken:
        return str(text)


def _cpu(value: object) -> str:
    try:
        return str(g.parse_cpu(value).normalize())
    except g.RuleBroken:
        return str(value)


def _secret(ref: str, version: str) -> str:
    """`NAME:VERSION`, whether the secret is named alone or as projects/P/secrets/NAME."""
    return f"{ref.rsplit('/', 1)[-1]}:{version or 'latest'}"


def _live_secrets(template: Any) -> list[str]:
    found = []
    for container in template.containers:
        for var in container.env:
            ref = var.value_source.secret_key_ref
            if ref.secret:
                found.append(f"{var.name}={_secret(ref.secret, ref.version)}")
    return sorted(found)


def _spec_secrets(spec: Spec) -> list[str]:
    return sorted(f"{k}={_secret(*v.rsplit(':', 1))}" for k, v in spec.secrets.items())


# --- showing it ------------------------------------------------------------------------------


def summary(frame: pd.DataFrame) -> str:
    """One line: N automations: X healthy, Y failed, Z drifted (each row counted once)."""
    counts = frame["health"].value_counts()
    n, ok = len(frame), int(frame["health"].isin(HEALTHY).sum())
    paused = f" ({counts.get('paused', 0)} paused)" if counts.get("paused", 0) else ""
    text = (
        f"{n} automation{'s' if n != 1 else ''}: {ok} healthy{paused}, "
        f"{counts.get('failed', 0)} failed, {counts.get('drifted', 0)} drifted"
    )
    return text + (f", {counts['missing']} missing" if counts.get("missing", 0) else "")


def styled(frame: pd.DataFrame) -> Styler:
    """The table for JupyterLab: failed and missing rows red, drifted amber, paused grey."""
    shown = frame.style.apply(_row_colour, axis=1).hide(axis="index")
    return shown.format(precision=3, na_rep="")


def _row_colour(row: pd.Series) -> list[str]:
    colour = COLOURS.get(row["health"])
    return [f"background-color: {colour}" if colour else ""] * len(row)


def to_text(frame: pd.DataFrame, width: int = 40) -> str:
    """The table for a terminal: long cells cut to `width`, then each drift in full."""
    if frame.empty:
        return "(no automations)"
    lines = [frame.to_string(index=False, max_colwidth=width)]
    drifted = frame[frame["drift"].ne("")]
    if len(drifted):
        lines.append("\ndrift (live -> file):")
        lines += [f"  {row.job}: {row.drift}" for row in drifted.itertuples()]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when every automation is healthy (ok or paused), 1 otherwise, 2 for bad input."""
    from opslib.fleet.load import open_fleet
    from opslib.spec.project import project_root

    params = list(args.params) or [_default_params(project_root(Path.cwd()))]
    frame = status(open_fleet(params, target=args.target), since=args.since)
    print(to_text(frame))
    print(f"\n{verdict(frame)!r}")
    return 0 if healthy(frame) else 1


def verdict(frame: pd.DataFrame) -> Any:
    """The page's one-line result: HEALTHY or UNHEALTHY, and the counts."""
    from opslib.core.display import banner

    ok = healthy(frame)
    word = "HEALTHY" if ok else "UNHEALTHY"
    return banner("passed" if ok else "failed", f"status: {summary(frame)}", word=word)


def _default_params(root: Path) -> Path:
    folder = root / "parameters"
    if not folder.is_dir():
        raise BadInput(
            "status",
            f"no parameters/ folder in {root}",
            "run it in an opslib project, or pass PARAMS.yaml files or folders",
        )
    return folder


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `opslib status [PARAMS...]`."""
    st = sub.add_parser("status", help="every automation: schedule, last run, drift, health")
    st.add_argument(
        "params",
        type=Path,
        nargs="*",
        help="PARAMS.yaml files and/or folders (default: parameters/)",
    )
    st.add_argument("--target", choices=["local", "gcp"], help="override the files' target")
    st.add_argument("--since", default="24h", help="how far back to read runs: 1h, 24h, 7d")
    st.set_defaults(func=cmd_status)
