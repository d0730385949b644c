"""Step 4 (schedule) against a real localcloud: plan, create, idempotent re-run, update masks,
pause/resume/delete, the deadline chain checked against the live service, the printed gcloud
command run for real, and the job firing at the deployed service.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from datetime import UTC, datetime

import lc
import pandas as pd
import pytest
import yaml
from google.api_core import exceptions
from google.cloud import run_v2, scheduler_v1
from lc import PARENT, PROJECT, REGION, advance, build, call, client_kwargs, image_name, unique
from lc import server as lc_server
from test_localcloud_run import deploy, entries, grant, service_folder

from conftest import EXAMPLE
from opslib.cloud.clients import Clients
from opslib.core.errors import BadInput, OpslibError
from opslib.localcloud import control
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps import schedule as sched

FIRE_JOB = unique("tick")  # the one job route the module's image serves
INVOKER = f"{PROJECT}@appspot.gserviceaccount.com"  # Spec.invoker_account's default
ENABLED, PAUSED = scheduler_v1.Job.State.ENABLED, scheduler_v1.Job.State.PAUSED


@pytest.fixture(autouse=True)
def localcloud(monkeypatch):
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc_server().url)


@pytest.fixture(scope="module")
def run():
    return run_v2.ServicesClient(**client_kwargs())


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """One image per module: the service with the FIRE_JOB route."""
    name = image_name(unique("sched"), "v1")
    build(service_folder(tmp_path_factory.mktemp("img"), FIRE_JOB), name)
    return name


@pytest.fixture(scope="module")
def service(run, image):
    """A live service with a 900s request timeout that the default invoker may call."""
    live = deploy(run, unique("sched"), image, timeout={"seconds": 900})
    grant(run, live, f"serviceAccount:{INVOKER}")
    return live


@pytest.fixture
def jobs():
    """Job ids deleted at teardown, so no job of this module fires when others advance time."""
    made: list[str] = []
    yield made
    for name in made:
        call(f"/v1/{PARENT}/jobs/{name}", method="DELETE")


def make_spec(service: str, job: str, **schedule) -> Spec:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"], data["job"]["name"] = service, job
    data["schedule"].update(schedule)
    return Spec.model_validate(data)


def service_id(service: run_v2.Service) -> str:
    return service.name.rsplit("/", 1)[-1]


def mark() -> int:
    return call("/_localcloud/calls?since=1000000000")[1]["next"]


def calls_since(start: int) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in call(f"/_localcloud/calls?since={start}")[1]["calls"]]


def mutating(start: int) -> list[tuple[str, str]]:
    return [c for c in calls_since(start) if c[0] in ("POST", "PATCH", "DELETE")]


def live_job(clients: Clients, spec: Spec) -> scheduler_v1.Job:
    return clients.scheduler.get_job(name=names.scheduler_job(spec))


def test_create_then_rerun_changes_nothing(service, jobs):
    spec = make_spec(service_id(service), unique("job"))
    jobs.append(spec.job.name)
    clients = lc.clients(spec.project)
    planned = sched.plan(spec, clients)
    [change] = planned.plan.changes
    assert (change.action, change.resource) == ("create", f"{PARENT}/jobs/{spec.job.name}")
    assert "0 9 * * 1-5" in change.detail and f"POST {service.uri}/run-" in change.detail
    assert shlex.split(change.gcloud) == [
        *("gcloud", "scheduler", "jobs", "create", "http", spec.job.name),
        f"--project={PROJECT}",
        f"--location={REGION}",
        "--schedule=0 9 * * 1-5",
        "--time-zone=Asia/Seoul",
        "--description=Collect FX rates every weekday morning",
        "--attempt-deadline=900s",
        f"--uri={service.uri}/run-{spec.job.name}",
        "--http-method=post",
        "--headers=Content-Type=application/json",
        '--message-body={"dry_run":false}',
        f"--oidc-service-account-email={INVOKER}",
        f"--oidc-token-audience={service.uri}",
    ]
    assert planned.plan.to_frame().loc[0, "action"] == "create"

    assert sched.schedule(spec, clients).changes == [change]
    live = live_job(clients, spec)
    assert live.state == ENABLED and live.http_target.headers["User-Agent"]
    assert sched.job_diff(spec, service.uri, live).changes == ()

    start = mark()
    again = sched.schedule(spec, clients)
    assert [(c.action, c.fields, c.gcloud) for c in again.changes] == [("no change", (), "")]
    assert calls_since(start) == [
        ("GET", f"/v2/{names.service(spec)}"),
        ("GET", f"/v1/{names.scheduler_job(spec)}"),
    ]

    frame = sched.job_frame(spec, clients)
    row = frame.iloc[0]
    assert (row["state"], row["schedule"], row["time_zone"]) == (
        "ENABLED",
        "0 9 * * 1-5",
        "Asia/Seoul",
    )
    assert (row["attempt_deadline"], row["last_status"]) == ("900s", "never ran")
    assert row["uri"] == f"{service.uri}/run-{spec.job.name}" and "09:00" in row["runs"]
    assert row["next_run"].hour == 9 and str(row["next_run"].tz) == "Asia/Seoul"
    runs = sched.next_runs_frame(spec, start=datetime(2025, 1, 3, 12, tzinfo=UTC))
    assert [r.isoformat() for r in runs["run"]] == [
        f"2025-01-{day:02d}T09:00:00+09:00" for day in (6, 7, 8, 9, 10)
    ]
    assert list(runs["weekday"]) == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def test_update_sends_exactly_the_changed_fields(service, jobs, monkeypatch):
    name = unique("job")
    jobs.append(name)
    spec = make_spec(service_id(service), name)
    clients = lc.clients(spec.project)
    sched.schedule(spec, clients)
    masks: list[dict] = []
    real = clients.scheduler.update_job

    def spy(**kwargs):
        masks.append(kwargs["update_mask"])
        return real(**kwargs)

    monkeypatch.setattr(clients.scheduler, "update_job", spy)
    changed = make_spec(service_id(service), name, cron="30 8 * * 1-5", attempt_deadline="600s")
    [change] = sched.schedule(changed, clients).changes
    assert (change.action, change.fields) == ("update", ("schedule", "attempt_deadline"))
    assert masks == [{"paths": ["schedule", "attempt_deadline"]}]
    assert (
        change.detail
        == "schedule: '0 9 * * 1-5' -> '30 8 * * 1-5'; attempt_deadline: '900s' -> '600s'"
    )
    assert shlex.split(change.gcloud) == [
        *("gcloud", "scheduler", "jobs", "update", "http", name),
        f"--project={PROJECT}",
        f"--location={REGION}",
        "--schedule=30 8 * * 1-5",
        "--attempt-deadline=600s",
    ]
    live = live_job(clients, changed)
    assert (live.schedule, live.attempt_deadline.total_seconds()) == ("30 8 * * 1-5", 600)
    assert live.http_target.body == b'{"dry_run":false}'  # untouched by the mask
    assert sched.schedule(changed, clients).changes[0].action == "no change"
    assert len(masks) == 1

    secret = make_spec(
        service_id(service),
        name,
        cron="30 8 * * 1-5",
        attempt_deadline="600s",
        headers={"X-Token": "s3cret"},
    )
    [change] = sched.schedule(secret, clients).changes
    assert (change.fields, change.detail) == (
        ("http_target.headers",),
        "http_target.headers changed",
    )
    assert masks[-1] == {"paths": ["http_target.headers"]}
    assert live_job(clients, secret).http_target.headers["X-Token"] == "s3cret"


def test_update_command_for_target_changes():
    spec = make_spec("svc", "job", headers={"X-Old": "1"})
    live = scheduler_v1.Job(sched.desired_job(spec, "https://svc.example"))
    get = make_spec("svc", "job", http_method="GET", body={}, headers={"X-New": "a,b"})
    job = sched.desired_job(get, "https://svc.example")
    fields = sched.job_diff(get, "https://svc.example", live).fields
    assert fields == ("http_target.http_method", "http_target.headers", "http_target.body")
    assert shlex.split(sched.update_command(get, job, live, fields))[8:] == [
        "--http-method=get",
        "--remove-headers=X-Old",
        "--update-headers=^;^Content-Type=application/json;X-New=a,b",
        "--clear-message-body",
    ]
    patch = make_spec("svc", "job", http_method="PATCH")
    assert sched.create_command(patch, sched.desired_job(patch, "https://x")).startswith("# ")


def test_pause_survives_an_update_then_resume_and_delete(service, jobs):
    name = unique("job")
    jobs.append(name)
    spec = make_spec(service_id(service), name)
    clients = lc.clients(spec.project)
    sched.schedule(spec, clients)
    [paused] = sched.pause(spec, clients).changes
    assert (paused.action, paused.fields, paused.detail) == (
        "update",
        ("state",),
        "ENABLED -> PAUSED",
    )
    assert (
        paused.gcloud
        == f"gcloud scheduler jobs pause {name} --project={PROJECT} --location={REGION}"
    )
    assert sched.pause(spec, clients).changes[0].action == "no change"

    changed = make_spec(service_id(service), name, cron="15 9 * * 1-5")
    assert sched.schedule(changed, clients).changes[0].fields == ("schedule",)
    live = live_job(clients, changed)
    assert (live.state, live.schedule) == (PAUSED, "15 9 * * 1-5")
    assert pd.isna(sched.job_frame(changed, clients).loc[0, "next_run"])

    assert sched.resume(spec, clients).changes[0].detail == "PAUSED -> ENABLED"
    assert live_job(clients, spec).state == ENABLED
    assert sched.resume(spec, clients).changes[0].action == "no change"

    [deleted] = sched.delete(spec, clients).changes
    assert (deleted.action, deleted.detail) == ("delete", "was ENABLED")
    assert shlex.split(deleted.gcloud)[3:5] == ["delete", name]
    with pytest.raises(exceptions.NotFound):
        live_job(clients, spec)
    start = mark()
    assert sched.delete(spec, clients).changes[0].detail == "absent"
    assert mutating(start) == []
    with pytest.raises(OpslibError, match="create it first"):
        sched.pause(spec, clients)


def test_deadline_chain_is_checked_against_the_live_service(run, image, jobs):
    short = deploy(run, unique("short"), image, timeout={"seconds": 60})
    spec = make_spec(service_id(short), unique("job"))  # the spec says deploy.timeout 900s
    jobs.append(spec.job.name)
    start = mark()
    with pytest.raises(BadInput) as info:
        sched.schedule(spec, lc.clients(spec.project))
    message = str(info.value)
    assert "schedule.attempt_deadline 900s" in message and "(60s)" in message
    assert "lower schedule.attempt_deadline to 60s" in message and "deploy.timeout" in message
    assert info.value.exit_code == 2
    slow = make_spec(service_id(short), spec.job.name, attempt_deadline="30s")
    slow = slow.model_copy(update={"job": slow.job.model_copy(update={"expected_duration": 45})})
    with pytest.raises(BadInput, match=r"job.expected_duration 45s is not below .* 30s"):
        sched.plan(slow, lc.clients(slow.project))
    assert mutating(start) == []
    assert call(f"/v1/{names.scheduler_job(spec)}")[0] == 404


def test_missing_service_says_deploy_first(jobs):
    spec = make_spec(unique("absent"), unique("job"))
    start = mark()
    with pytest.raises(OpslibError) as info:
        sched.schedule(spec, lc.clients(spec.project))
    assert not isinstance(info.value, BadInput) and info.value.exit_code == 1
    assert f"Cloud Run service {spec.service} does not exist" in str(info.value)
    assert "run step 3 (deploy" in info.value.fix
    assert mutating(start) == []


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
def test_printed_gcloud_create_makes_the_same_job(service, jobs, tmp_path):
    retry = {"count": 2, "min_backoff": "10s", "max_doublings": 3}
    spec = make_spec(
        service_id(service), unique("job"), headers={"X-Source": "opslib"}, retry=retry
    )
    planned = sched.plan(spec, lc.clients(spec.project))
    args = shlex.split(planned.plan.changes[0].gcloud)
    assert {"--max-retry-attempts=2", "--min-backoff=10s", "--max-doublings=3"} <= set(args)
    assert "--max-backoff=3600s" not in args  # defaults are left to gcloud
    other = unique("gcloud")
    jobs.append(other)
    args[5] = other
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env |= control.environment(lc_server().url) | {
        "CLOUDSDK_CONFIG": str(tmp_path),
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    }
    done = subprocess.run(
        [shutil.which("gcloud"), *args[1:]], env=env, capture_output=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    made = lc.clients(spec.project).scheduler.get_job(name=f"{PARENT}/jobs/{other}")
    assert sched.job_diff(spec, service.uri, made).changes == ()
    assert made.retry_config.retry_count == 2 and made.http_target.headers["X-Source"] == "opslib"


def test_the_job_fires_at_the_service(service, jobs):
    spec = make_spec(service_id(service), FIRE_JOB, cron="* * * * *", body={"dry_run": True})
    jobs.append(FIRE_JOB)
    clients = lc.clients(spec.project)
    sched.schedule(spec, clients)
    try:
        advance(60)
    finally:
        sched.pause(spec, clients)  # other tests move the clock a week: keep this one quiet
    row = sched.job_frame(spec, clients).iloc[0]
    assert (row["state"], row["last_status"]) == ("PAUSED", "OK")
    assert str(row["last_attempt"].tz) == "Asia/Seoul"
    done = entries(
        f'resource.labels.service_name="{service_id(service)}" AND jsonPayload.job="{FIRE_JOB}" '
        'AND jsonPayload.status="success"'
    )
    assert done and done[0]["jsonPayload"]["processed"] == 0
