"""One diff: what steps 3 and 4 would change is exactly what `opslib status` calls drift.

A project on the tests' real localcloud: a route job `r` and a Cloud Run job `j` built from the
same service folder, deployed and scheduled by the fleet steps. Then every field of every plan
(the Scheduler job, the Cloud Run service, the Cloud Run job and their invokers) is changed in a
copy of the parameters files, or on the live side where no file can change it, one at a time:
status must show that field, with both values (or its name alone when its values may be
secrets), and the dry-run plan of the step must list the same field. Finally everything is
changed at once, applied by steps 3-4, and status shows no drift and a rerun plans no change.
A field the diffs compare but no case here changes fails `test_every_field_has_a_case`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lc
import pytest
import yaml
from project import make_project

from conftest import EXAMPLE, ROOT
from opslib.cloud.clients import Clients
from opslib.fleet import status
from opslib.fleet import steps as fleet_steps
from opslib.fleet.load import Fleet, open_fleet
from opslib.spec import names
from opslib.steps import schedule as step4
from opslib.steps.deploy import desired as deploy_desired
from opslib.steps.schedule import desired as schedule_desired

NIGHTLY = ROOT / "parameters" / "nightly-backfill.yaml"
OTHER = "drift-caller@demo-project.iam.gserviceaccount.com"
SECRET = "drift-key"


@dataclass(frozen=True)
class Case:
    """One change and the field (on which resource) it must show up as."""

    resource: str  # scheduler (r's job), scheduler-j, service, run-job, invokers, job-invokers
    field: str
    edit: Callable[[dict, dict], None] | None = None  # (r's data, j's data) changed in place
    source: bool = False  # the change is to the service folder (a new job's route)


def _set(path: str, value: object, which: str = "r") -> Callable[[dict, dict], None]:
    def edit(r: dict, j: dict) -> None:
        data = r if which == "r" else j
        *parents, last = path.split(".")
        for key in parents:
            data = data.setdefault(key, {})
        data[last] = value

    return edit


FILE_CASES = [
    Case("scheduler", "schedule", _set("schedule.cron", "15 6 * * *")),
    Case("scheduler", "time_zone", _set("schedule.time_zone", "Asia/Tokyo")),
    Case("scheduler", "description", _set("job.description", "drifted words")),
    Case("scheduler", "attempt_deadline", _set("schedule.attempt_deadline", "600s")),
    Case("scheduler", "http_target.http_method", _set("schedule.http_method", "PUT")),
    Case("scheduler", "http_target.headers", _set("schedule.headers", {"X-Team": "ops"})),
    Case("scheduler", "http_target.body", _set("schedule.body", {"dry_run": True})),
    Case("scheduler", "http_target.oidc_token.audience", _set("schedule.audience", "https://a.b")),
    Case("scheduler", "retry_config.retry_count", _set("schedule.retry.count", 2)),
    Case(
        "scheduler", "retry_config.min_backoff_duration", _set("schedule.retry.min_backoff", "7s")
    ),
    Case(
        "scheduler", "retry_config.max_backoff_duration", _set("schedule.retry.max_backoff", "60s")
    ),
    Case("scheduler", "retry_config.max_doublings", _set("schedule.retry.max_doublings", 2)),
    Case(
        "scheduler",
        "retry_config.max_retry_duration",
        _set("schedule.retry.max_retry_duration", "300s"),
    ),
    Case(
        "scheduler",
        "http_target.oidc_token.service_account_email",
        _set("schedule.service_account", OTHER),
    ),
    Case("invokers", "invokers", _set("schedule.service_account", OTHER)),
    Case(
        "scheduler-j",
        "http_target.oauth_token.service_account_email",
        _set("schedule.service_account", OTHER, "j"),
    ),
    Case("job-invokers", "invokers", _set("schedule.service_account", OTHER, "j")),
    Case("service", "memory", _set("deploy.memory", "1Gi")),
    Case("service", "cpu", _set("deploy.cpu", 1)),
    Case("service", "timeout", _set("deploy.timeout", "1000s")),
    Case("service", "min_instances", _set("deploy.min_instances", 1)),
    Case("service", "max_instances", _set("deploy.max_instances", 7)),
    Case("service", "concurrency", _set("deploy.concurrency", 20)),
    Case("service", "env", _set("deploy.env", {"MODE": "strict"})),
    Case("service", "env", _set("job.overlap", "allow")),  # no lease bucket to name
    Case("service", "secrets", _set("secrets", {"API_KEY": f"{SECRET}:latest"})),
    Case("run-job", "memory", _set("deploy.memory", "1Gi", "j")),
    Case("run-job", "cpu", _set("deploy.cpu", 1, "j")),
    Case("run-job", "env", _set("deploy.env", {"MODE": "strict"}, "j")),
    Case("run-job", "secrets", _set("secrets", {"API_KEY": f"{SECRET}:latest"}, "j")),
    Case("run-job", "tasks", _set("job.tasks", 3, "j")),
    Case("run-job", "parallelism", _set("job.parallelism", 1, "j")),
    Case("run-job", "max_retries", _set("job.max_retries", 0, "j")),
    Case("run-job", "task_timeout", _set("job.task_timeout", "4h", "j")),
    Case("service", "image", source=True),
    Case("service", "routes", source=True),
    Case("run-job", "image", source=True),
]
# Fields no parameters file can change (they follow from the job's name and runtime): changed on
# the live side by `live_edits`, which `test_everything_at_once_then_applied` also undoes.
LIVE_CASES = [
    Case("scheduler", "http_target.uri"),
    Case("scheduler-j", "http_target.oauth_token.scope"),
    Case("run-job", "command"),
]


@dataclass
class Project:
    root: Path
    r: Path
    j: Path

    def data(self) -> tuple[dict, dict]:
        return yaml.safe_load(self.r.read_text()), yaml.safe_load(self.j.read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """r and j deployed and scheduled from one folder; the secret the cases mount exists."""
    root = make_project(tmp_path_factory.mktemp("drift") / "project")
    service = lc.unique("drift")
    r = _write(root / "parameters", "r", yaml.safe_load(EXAMPLE.read_text()), service, "r")
    j = _write(root / "parameters", "j", yaml.safe_load(NIGHTLY.read_text()), service, "j")
    clients = lc.clients()
    secret = clients.secrets.create_secret(
        parent=f"projects/{lc.PROJECT}", secret_id=SECRET, secret={"replication": {"automatic": {}}}
    )
    clients.secrets.add_secret_version(parent=secret.name, payload={"data": b"value"})
    fleet = _fleet([r, j])
    apply(fleet, steps_1_2=True)
    assert _drift(fleet) == {"r": "", "j": ""}, "a fresh deploy has no drift"
    yield Project(root, r, j)
    for session in fleet.sessions:
        step4.delete(session.spec, clients)
    clients.secrets.delete_secret(name=secret.name)
    clients.run.delete_service(name=names.service(fleet.sessions[0].spec)).result(timeout=60)
    clients.jobs.delete_job(name=names.run_job(fleet.sessions[1].spec)).result(timeout=60)


def _write(folder: Path, stem: str, data: dict, service: str, prefix: str) -> Path:
    data["service"], data["region"] = service, lc.REGION
    data["job"]["name"] = lc.unique(f"drift-{prefix}")
    data["deploy"]["min_instances"] = 0
    if stem == "j":  # seconds, not hours: the cases never run it
        data["job"] |= {"tasks": 2, "parallelism": 2, "max_retries": 1, "task_timeout": "3h"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fleet(files: list[Path]) -> Fleet:
    fleet = open_fleet(files, target="local")
    for session in fleet.sessions:
        session._clients = lc.clients()
    return fleet


def apply(fleet: Fleet, steps_1_2: bool = False) -> None:
    if steps_1_2:
        fleet_steps.write_functions(fleet)
        fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)


def _drift(fleet: Fleet) -> dict[str, str]:
    frame = status.status(fleet, since=timedelta(minutes=1))
    stems = {s.spec.job.name: s.params.stem for s in fleet.sessions}
    return {stems[row.job]: row.drift for row in frame.itertuples()}


def variant(project: Project, name: str, cases: list[Case]) -> Fleet:
    """A copy of the parameters (and, for a source case, of the folder) with `cases` applied."""
    r, j = project.data()
    for case in cases:
        if case.edit is not None:
            case.edit(r, j)
    if any(case.source for case in cases):
        folder = f"services/{name}"
        shutil.copytree(project.root / "service", project.root / folder)
        r["service_dir"] = j["service_dir"] = folder
    where = project.root / name
    files = [_dump(where / "r.yaml", r), _dump(where / "j.yaml", j)]
    fleet = _fleet(files)
    if any(case.source for case in cases):
        _add_route(fleet, project.root / f"services/{name}")
    return fleet


def _dump(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _add_route(fleet: Fleet, folder: Path) -> None:
    """Steps 1-2 of one more job into the folder: a new module (image) and route (routes)."""
    from opslib.steps.endpoint.patch import patch_endpoint
    from opslib.steps.scaffold import scaffold

    spec = fleet.sessions[0].spec
    extra = spec.model_copy(update={"job": spec.job.model_copy(update={"name": "drift-extra"})})
    scaffold(extra, folder)
    patch_endpoint(extra, folder)


def planned_fields(fleet: Fleet) -> dict[str, set[str]]:
    """The fields each resource's dry-run plan would change (steps 3 and 4)."""
    r, j = fleet.sessions
    plan = fleet_steps.deploy(fleet, progress=False, dry_run=True).plan
    found: dict[str, set[str]] = {}
    for row in plan.itertuples():
        fields = set(filter(None, row.fields.split(", ")))
        granted = {"invokers"} if row.action != "no change" else set()
        if row.resource.startswith("service "):
            found["service"] = fields
        elif row.resource.startswith("job invoker "):
            found["job-invokers"] = found.get("job-invokers", set()) | granted
        elif row.resource.startswith("job "):
            found["run-job"] = fields
        elif row.resource.startswith("invoker "):
            found["invokers"] = found.get("invokers", set()) | granted
    found["scheduler"] = set(step4.plan(r.spec, r.clients).fields)
    found["scheduler-j"] = set(step4.plan(j.spec, j.clients).fields)
    return found


def shown(drift: str, field: str) -> bool:
    """The drift names the field with both values, or alone when its values may be secret."""
    parts = [p.strip() for p in drift.split(";")]
    hidden = field in (*schedule_desired.SECRET_FIELDS, *deploy_desired.HIDDEN)
    if hidden:
        return any(p.startswith(f"{field} changed") for p in parts)
    return any(p.startswith(f"{field}: ") and " -> " in p for p in parts)


ROW = {"scheduler": "r", "service": "r", "invokers": "r"}  # the rest are j's row


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: f"{c.resource}-{c.field}")
def test_a_changed_field_is_drift_and_in_the_plan(project, case, request):
    fleet = variant(project, request.node.name.split("[")[1].rstrip("]"), [case])
    drift = _drift(fleet)
    row = ROW.get(case.resource, "j")
    assert shown(drift[row], case.field), (case, drift)
    planned = planned_fields(fleet)
    assert case.field in planned.get(case.resource, set()), (case, planned)
    # Nothing else moved: the plan's fields on every resource are what the row shows.
    for resource, fields in planned.items():
        text = drift[ROW.get(resource, "j")]
        for field in fields:
            assert shown(text, field), (resource, field, text)


def live_edits(clients: Clients, fleet: Fleet) -> None:
    """The fields no file can change, changed on the live side by someone else."""
    r, j = (s.spec for s in fleet.sessions)
    job = clients.scheduler.get_job(name=names.scheduler_job(r))
    job.http_target.uri = "https://elsewhere.example" + r.job.route  # another host, same path
    clients.scheduler.update_job(job=job, update_mask={"paths": ["http_target.uri"]})
    other = clients.scheduler.get_job(name=names.scheduler_job(j))
    other.http_target.oauth_token.scope = "https://www.googleapis.com/auth/run"
    clients.scheduler.update_job(job=other, update_mask={"paths": ["http_target.oauth_token"]})
    run_job = clients.jobs.get_job(name=names.run_job(j))
    run_job.template.template.containers[0].args = ["-m", "scripts.batch.elsewhere"]
    clients.jobs.update_job(job=run_job).result(timeout=120)


def test_every_field_has_a_case(project):
    """Every field the three diffs and the invoker diffs compare is changed by some case."""
    r, j = _fleet([project.r, project.j]).sessions
    service = lc.clients().run.get_service(name=names.service(r.spec))
    scheduler = set(schedule_desired.flat(schedule_desired.desired_job(r.spec, service.uri)))
    routed = scheduler - set(schedule_desired.OAUTH)
    started = {
        "schedule",
        "time_zone",
        "description",
        "attempt_deadline",
        *(f for f in scheduler if f.startswith("retry_config.")),
        *schedule_desired.OAUTH,
    }
    wanted = {
        "scheduler": routed,
        "scheduler-j": started,
        "service": set(deploy_desired.service_fields(r.spec, "x", [])),
        "run-job": set(deploy_desired.job_fields(j.spec, "x")),
        "invokers": {"invokers"},
        "job-invokers": {"invokers"},
    }
    covered: dict[str, set[str]] = {}
    for case in FILE_CASES + LIVE_CASES:
        covered.setdefault(case.resource, set()).add(case.field)
    retry_and_times = started - set(schedule_desired.OAUTH)  # the same settings as r's job
    covered["scheduler-j"] |= retry_and_times
    assert covered == wanted


def test_everything_at_once_then_applied(project):
    """All file and live changes together show as drift; steps 3-4 apply them; then nothing."""
    clients = lc.clients()
    fleet = variant(project, "all", FILE_CASES)
    live_edits(clients, fleet)
    drift = _drift(fleet)
    for case in FILE_CASES + LIVE_CASES:
        row = ROW.get(case.resource, "j")
        assert shown(drift[row], case.field), (case, drift[row])
    apply(fleet)
    assert _drift(fleet) == {"r": "", "j": ""}
    again: Any = planned_fields(fleet)
    assert all(not fields for fields in again.values()), again
