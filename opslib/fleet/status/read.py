"""What Google has for a fleet, read in a fixed number of calls run side by side.

Per location (project, region) one Scheduler `jobs:list`, plus one Cloud Run `services:list`
and/or `jobs:list` as the fleet's runtimes need; per target one Logging `entries:list` for the
jobs' end lines (a further page only while a job has none yet). Google's errors become one
line saying which viewer roles to grant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from opslib.cloud.errors import translate
from opslib.core.errors import OpslibError
from opslib.fleet.status.runs import Key, keep, key_of
from opslib.spec import names
from opslib.steps import logs

if TYPE_CHECKING:
    from opslib.cloud.clients import Clients
    from opslib.cloud.session import Session
    from opslib.fleet.load import Fleet
    from opslib.spec.model import Spec

VIEWERS = (
    "status reads with roles/cloudscheduler.viewer, roles/run.viewer and roles/logging.viewer "
    "on the project: grant them, or check the target"
)
LOG_PAGES = 3  # entries:list calls at most, only while some job has no end line yet
FILTER_MAX = 15_000  # Cloud Logging takes 20,000 characters; the job clause goes first


@dataclass
class Live:
    """What Google has, by full name, and each automation's newest run in the logs."""

    jobs: dict[str, Any] = field(default_factory=dict)  # Scheduler jobs
    services: dict[str, Any] = field(default_factory=dict)  # Cloud Run services
    run_jobs: dict[str, Any] = field(default_factory=dict)  # Cloud Run jobs (runtime: job)
    policies: dict[str, Any] = field(default_factory=dict)  # IAM policy of each (None: absent)
    runs: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)  # end lines, newest first
    # Open Monitoring incidents by (job, region), read only when some spec has `alerts:`.
    incidents: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # Monitoring's channels and policies of each (target, project) a spec with `alerts:` uses.
    monitoring: dict[tuple[str, str], tuple[list[Any], list[Any]]] = field(default_factory=dict)


def read_live(fleet: Fleet, since: datetime) -> Live:
    """Per location its Scheduler jobs, and its Cloud Run services and/or jobs as the fleet's
    runtimes need; per target the end lines. All calls at once."""
    locations: dict[tuple[str, str, str], tuple[Clients, set[str]]] = {}
    targets: dict[str, list[Session]] = {}
    for session in fleet.sessions:
        spec = session.spec
        where = (spec.target, spec.project, spec.region)
        clients, runtimes = locations.setdefault(where, (session.clients, set()))
        runtimes.add(spec.job.effective_runtime)
        targets.setdefault(spec.target, []).append(session)
    calls: list[tuple[str, Callable[[], Any]]] = []
    for (_, project, region), (clients, runtimes) in locations.items():
        parent = names.location_of(project, region)
        calls.append(("jobs", partial(list_jobs, clients, parent)))
        if "service" in runtimes:
            calls.append(("services", partial(list_services, clients, parent)))
        if "job" in runtimes:
            calls.append(("run_jobs", partial(list_run_jobs, clients, parent)))
    calls += [("policies", call) for call in _policy_calls(fleet)]
    for sessions in targets.values():
        clients = sessions[0].clients
        calls.append(("runs", partial(read_runs, clients, [s.spec for s in sessions], since)))
    watched = {(s.spec.target, s.spec.project): s for s in fleet.sessions if s.spec.alerts}
    for (target, project), session in watched.items():
        calls.append(("incidents", partial(read_incidents, session.clients, project)))
        calls.append(("monitoring", partial(_monitoring, session, target)))
    built: dict[int, tuple[Clients, set[str]]] = {}
    for clients, runtimes in locations.values():  # one Clients may serve several locations
        built.setdefault(id(clients), (clients, set()))[1].update(runtimes)
    for clients, runtimes in built.values():
        _build(clients, runtimes)
    live = Live()
    for (kind, _), found in zip(calls, _concurrently([c for _, c in calls]), strict=True):
        getattr(live, kind).update(found)
    return live


def _policy_calls(fleet: Fleet) -> list[Callable[[], dict[str, Any]]]:
    """One IAM read per service and per Cloud Run job of the fleet: the invokers step 3 grants
    are part of what it would change."""
    calls: dict[str, Callable[[], dict[str, Any]]] = {}
    for session in fleet.sessions:
        spec, clients = session.spec, session.clients
        if spec.job.effective_runtime == "job":
            name, read = names.run_job(spec), clients.jobs.get_iam_policy
        else:
            name, read = names.service(spec), clients.run.get_iam_policy
        calls.setdefault(name, partial(_policy, read, name))
    return list(calls.values())


def _policy(read: Callable[..., Any], name: str) -> dict[str, Any]:
    """The resource's IAM policy by its name; None when the resource does not exist."""
    from google.api_core import exceptions

    try:
        return {name: read(request={"resource": name})}
    except exceptions.NotFound:
        return {name: None}


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
    except (exceptions.GoogleAPICallError, OSError) as exc:
        error = translate(exc, "status", "run", VIEWERS)
    raise error


def list_jobs(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Scheduler job of a location in one call (500 a page, Scheduler's maximum)."""
    request = {"parent": parent, "page_size": 500}
    return {job.name: job for job in clients.scheduler.list_jobs(request=request)}


def list_services(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Cloud Run service of a location."""
    return {s.name: s for s in clients.run.list_services(parent=parent)}


def list_run_jobs(clients: Clients, parent: str) -> dict[str, Any]:
    """Every Cloud Run job of a location (only asked when the fleet has `runtime: job` there)."""
    from google.api_core import exceptions

    try:
        return {j.name: j for j in clients.jobs.list_jobs(parent=parent)}
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
        "resourceNames": sorted({names.project(s) for s in specs}),
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
            keep(newest, entry)
        token = page.get("nextPageToken")
        if not token or wanted <= newest.keys():
            break
        body = {**body, "pageToken": token}
    return newest


def read_incidents(
    clients: Clients, project: str, state: str | None = "OPEN"
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The project's incidents (Monitoring's `projects.alerts`; open ones unless `state` is
    None), by (job, region) from the user labels step `alerts` puts on its policies."""
    session, base = clients.monitoring_http
    url = f"{base}/v3/{names.project_of(project)}/alerts"
    params: dict[str, Any] = {"pageSize": 1000}
    if state:
        params["filter"] = f'state="{state}"'
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    while True:
        answer = session.get(url, params=params, timeout=30)
        body = answer.json() if answer.content else {}
        if answer.status_code != 200:
            message = body.get("error", {}).get("message", answer.reason)
            raise OpslibError(
                f"status: incidents of {project}",
                f"{answer.status_code}: {message}",
                "grant roles/monitoring.viewer on the project, or check the target",
            )
        for alert in body.get("alerts", []):
            labels = alert.get("policy", {}).get("userLabels", {})
            job, region = (labels.get(k) for k in names.ALERT_LABELS)
            if job and region:
                found.setdefault((job, region), []).append(alert)
        if not body.get("nextPageToken"):
            return found
        params["pageToken"] = body["nextPageToken"]


def _monitoring(session: Session, target: str) -> dict[tuple[str, str], Any]:
    """The channels and policies of a watched automation's project, for the alerts drift."""
    from opslib.steps import alerts

    spec = session.spec
    return {(target, spec.project): alerts.read_project(spec, session.clients)}
