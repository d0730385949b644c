"""Cloud Build + Cloud Run on localcloud: real builds, real instances, the front's IAM and logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import yaml
from google.api_core import exceptions
from google.cloud import run_v2, scheduler_v1
from lc import (
    PARENT,
    PROJECT,
    advance,
    build,
    call,
    client_kwargs,
    entries,
    image_name,
    token,
    unique,
)

from conftest import EXAMPLE, copy_service
from opslib.spec.model import Spec
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold

SA = f"scheduler@{PROJECT}.iam.gserviceaccount.com"


def service_folder(tmp: Path, job: str = "fx-rates") -> Path:
    """service/ with one job added through steps 1 and 2."""
    folder = tmp / "service"
    copy_service(folder)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["job"]["name"] = job
    spec = Spec.model_validate(data)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    return folder


@pytest.fixture(scope="module")
def run():
    return run_v2.ServicesClient(**client_kwargs())


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """One built image of the service with the fx-rates job."""
    folder = service_folder(tmp_path_factory.mktemp("img"))
    name = image_name("batch-service", "v1")
    result = build(folder, name)
    assert result.status == result.Status.SUCCESS
    assert [i.name for i in result.results.images] == [name]
    return name


def deploy(run, service_id: str, image: str, **template) -> run_v2.Service:
    template = {
        "containers": [{"image": image, "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}],
        **template,
    }
    operation = run.create_service(
        parent=PARENT, service_id=service_id, service={"template": template}
    )
    return operation.result(timeout=120)


def grant(run, service: run_v2.Service, member: str) -> None:
    policy = run.get_iam_policy(request={"resource": service.name})
    policy.bindings.add(role="roles/run.invoker", members=[member])
    run.set_iam_policy(request={"resource": service.name, "policy": policy})


def fetch(url: str, bearer: str | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        with urlopen(Request(url, data=data, headers=headers), timeout=60) as response:
            return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def test_deploy_runs_the_image_and_the_front_enforces_iam(run, image):
    service_id = unique("svc")
    service = deploy(run, service_id, image)
    revision = service.latest_ready_revision.rsplit("/", 1)[-1]
    assert revision.startswith(f"{service_id}-00001-") and len(revision) == len(service_id) + 10
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    # The resolved digest is where Run v2 has it: containerStatuses[], not a top-level field.
    _, answer = call(f"/v2/{service.latest_ready_revision}")
    assert "imageDigest" not in answer
    assert answer["containerStatuses"][0]["imageDigest"].startswith("sha256:")
    assert fetch(service.uri + "/health")[0] == 403  # private by default
    assert fetch(service.uri + "/health", "not-a-token")[0] == 401
    assert fetch(service.uri + "/health", token(service.uri, SA))[0] == 403  # no invoker role yet
    grant(run, service, f"serviceAccount:{SA}")
    assert fetch(service.uri + "/health", token("http://elsewhere", SA))[0] == 401
    status, body = fetch(service.uri + "/", token(service.uri, SA))
    assert status == 200
    assert json.loads(body)["revision"] == revision  # K_REVISION reached the container
    assert json.loads(body)["service"] == service_id  # K_SERVICE
    logs = entries(
        f'resource.labels.service_name="{service_id}" AND log_id("run.googleapis.com/requests")'
    )
    assert [e["httpRequest"]["status"] for e in logs] == [403, 401, 403, 401, 200]
    assert all(e["resource"]["type"] == "cloud_run_revision" for e in logs)
    running = {i["instanceId"] for i in call("/_localcloud/instances")[1]["instances"]}
    assert logs[-1]["labels"]["instanceId"] in running  # which instance served it
    assert all("labels" not in e for e in logs[:-1])  # refused at the front: no instance


def test_front_survives_the_instance_closing_idle_connections(run, image):
    """gunicorn drops a keep-alive connection after 2 s idle; the next request must not 503."""
    service = deploy(run, unique("idle"), image)
    grant(run, service, f"serviceAccount:{SA}")
    bearer = token(service.uri, SA)
    statuses = [fetch(service.uri + "/health", bearer)[0]]
    time.sleep(3)  # past gunicorn's keepalive (2 s): the front's pooled connection is closed
    statuses += [fetch(service.uri + "/health", bearer)[0] for _ in range(3)]
    assert statuses == [200, 200, 200, 200]


def test_scheduler_to_service_end_to_end(run, image):
    service_id = unique("e2e")
    service = deploy(run, service_id, image)
    grant(run, service, f"serviceAccount:{SA}")
    sc = scheduler_v1.CloudSchedulerClient(**client_kwargs())
    job = sc.create_job(
        parent=PARENT,
        job={
            "name": f"{PARENT}/jobs/{service_id}",
            "schedule": "* * * * *",
            "http_target": {
                "uri": service.uri + "/run-fx-rates",
                "http_method": scheduler_v1.HttpMethod.POST,
                "body": b'{"dry_run": true}',
                "headers": {"Content-Type": "application/json"},
                "oidc_token": {"service_account_email": SA, "audience": service.uri},
            },
        },
    )
    try:
        advance(60)
    finally:
        sc.pause_job(name=job.name)  # other tests move the clock a week: keep this one quiet
    job = sc.get_job(name=job.name)
    assert job.status.code == 0 and job.last_attempt_time
    done = entries(
        f'resource.labels.service_name="{service_id}" AND jsonPayload.job="fx-rates" '
        'AND jsonPayload.status="success"'
    )
    assert done and done[0]["severity"] == "INFO"
    assert done[0]["jsonPayload"]["processed"] == 0 and "run_id" in done[0]["jsonPayload"]
    assert done[0]["logName"].endswith("/logs/run.googleapis.com%2Fstdout")
    booted = entries(f'resource.labels.service_name="{service_id}" AND "Booting worker"')
    assert booted, "gunicorn's own lines reach Logging too"


def test_wrong_audience_is_an_unauthenticated_attempt(run, image):
    service_id = unique("aud")
    service = deploy(run, service_id, image)
    grant(run, service, f"serviceAccount:{SA}")
    sc = scheduler_v1.CloudSchedulerClient(**client_kwargs())
    job = sc.create_job(
        parent=PARENT,
        job={
            "name": f"{PARENT}/jobs/{service_id}",
            "schedule": "0 0 1 * *",
            "http_target": {
                "uri": service.uri + "/run-fx-rates",
                "http_method": scheduler_v1.HttpMethod.POST,
                "oidc_token": {"service_account_email": SA, "audience": "https://wrong.example"},
            },
        },
    )
    sc.run_job(name=job.name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not sc.get_job(name=job.name).last_attempt_time:
        time.sleep(0.1)
    assert sc.get_job(name=job.name).status.code == 16  # UNAUTHENTICATED


def test_failed_revision_keeps_traffic_on_the_good_one(run, image, tmp_path):
    service_id = unique("bad")
    good = deploy(run, service_id, image)
    broken = service_folder(tmp_path)
    endpoint = broken / "batch_endpoint.py"
    endpoint.write_text(endpoint.read_text() + "\nraise RuntimeError('boom at import')\n")
    bad_image = image_name(service_id, "broken")
    build(broken, bad_image)
    service = run.get_service(name=good.name)
    service.template.containers[0].image = bad_image
    with pytest.raises(exceptions.FailedPrecondition) as info:
        run.update_service(service=service).result(timeout=120)
    assert "is not ready and cannot serve traffic" in info.value.message
    assert "failed to start and listen on the port" in info.value.message
    after = run.get_service(name=good.name)
    assert after.latest_ready_revision == good.latest_ready_revision
    assert after.traffic[0].revision == good.latest_ready_revision.rsplit("/", 1)[-1]
    failed = [
        r
        for r in run_v2.RevisionsClient(**client_kwargs()).list_revisions(parent=good.name)
        if r.name != good.latest_ready_revision
    ]
    assert failed and failed[0].conditions[0].state == run_v2.Condition.State.CONDITION_FAILED
    grant(run, after, f"serviceAccount:{SA}")
    status, body = fetch(after.uri + "/", token(after.uri, SA))
    assert (
        status == 200
        and json.loads(body)["revision"] == good.latest_ready_revision.rsplit("/", 1)[-1]
    )
    crash = entries(f'resource.labels.service_name="{service_id}" AND textPayload:"boom at import"')
    assert crash, "the crashing revision's traceback reached Logging"


def test_request_timeout_is_504_and_the_instance_keeps_running(run, tmp_path):
    folder = service_folder(tmp_path, "slow-job")
    module = folder / "scripts" / "batch" / "slow_job.py"
    module.write_text(
        module.read_text()
        .replace("import logging\n", "import logging\nimport time\n", 1)
        .replace(
            "    processed, errors = 0, 0\n",
            "    processed, errors = 0, 0\n"
            "    print('plain line', flush=True)\n    time.sleep(3)\n",
            1,
        )
    )
    service_id = unique("slow")
    image = image_name(service_id, "v1")
    build(folder, image)
    service = deploy(run, service_id, image, timeout={"seconds": 1})
    grant(run, service, f"serviceAccount:{SA}")
    started = time.monotonic()
    status, body = fetch(service.uri + "/run-slow-job", token(service.uri, SA), data=b"{}")
    assert status == 504 and body == b"upstream request timeout"
    assert time.monotonic() - started < 2.5
    timeout = entries(f'resource.labels.service_name="{service_id}" AND httpRequest.status=504')
    assert (
        timeout[0]["severity"] == "ERROR" and "maximum request timeout" in timeout[0]["textPayload"]
    )
    deadline = time.monotonic() + 10
    finished: list[dict] = []
    while time.monotonic() < deadline and not finished:
        time.sleep(0.2)
        finished = entries(
            f'resource.labels.service_name="{service_id}" AND jsonPayload.status="success"'
        )
    assert finished, "the job kept running after the 504 and finished"
    plain = entries(f'resource.labels.service_name="{service_id}" AND textPayload="plain line"')
    assert [(e["severity"], e["logName"].rsplit("%2F", 1)[-1]) for e in plain] == [
        ("DEFAULT", "stdout")
    ]


def test_module_missing_from_requirements_fails_as_on_cloud_run(run, tmp_path):
    folder = service_folder(tmp_path, "needs-yaml")
    module = folder / "scripts" / "batch" / "needs_yaml.py"
    module.write_text("import yaml  # not in requirements.txt\n" + module.read_text())
    service_id = unique("deps")
    image = image_name(service_id, "v1")
    build(folder, image)
    service = deploy(run, service_id, image)
    grant(run, service, f"serviceAccount:{SA}")
    status, body = fetch(service.uri + "/run-needs-yaml", token(service.uri, SA), data=b"{}")
    assert status == 500 and "No module named 'yaml'" in json.loads(body)["error"]


def test_cold_start_after_scale_to_zero(run, image):
    service_id = unique("cold")
    service = deploy(run, service_id, image)
    grant(run, service, f"serviceAccount:{SA}")
    assert call("/_localcloud/instances:scaleToZero", {})[1]["stopped"] >= 1
    status, _ = fetch(service.uri + "/health", token(service.uri, SA))
    assert status == 200
    system = entries(
        f'resource.labels.service_name="{service_id}" AND '
        'log_id("run.googleapis.com/varlog/system") AND textPayload:"Starting new instance"'
    )
    reasons = [e["textPayload"].split("Reason: ")[1].split(" ")[0] for e in system]
    assert reasons == ["DEPLOYMENT_ROLLOUT", "AUTOSCALING"]


def test_syntax_error_fails_the_build_at_compileall(tmp_path):
    folder = service_folder(tmp_path)
    endpoint = folder / "batch_endpoint.py"
    endpoint.write_text(endpoint.read_text() + "\ndef oops(:\n")
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        build(folder, image_name("syntax", "v1"))
    assert "RUN python -m compileall -q ." in str(info.value)


def test_build_rejects_what_it_cannot_carry_out(tmp_path):
    folder = tmp_path / "weird"
    copy_service(folder)
    dockerfile = folder / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace("WORKDIR /app", "WORKDIR /app\nRUN apt-get update")
    )
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        build(folder, image_name("weird", "v1"))
    assert "RUN apt-get update" in str(info.value)


@pytest.mark.parametrize(
    ("service_id", "template", "message"),
    [
        ("Bad_Id", {}, "only lowercase, digits, and hyphens"),
        (
            "ok-env",
            {"containers": [{"image": "x", "env": [{"name": "PORT", "value": "1"}]}]},
            "reserved env names were provided: PORT",
        ),
        (
            "ok-cpu",
            {
                "containers": [
                    {"image": "x", "resources": {"limits": {"cpu": "1", "memory": "8Gi"}}}
                ]
            },
            # Cloud Run's words (googleapis/repo-automation-bots#3875)
            "Invalid value specified for memory. For 1.0 CPU, memory must be between 128Mi and "
            "4Gi inclusive.",
        ),
        ("ok-timeout", {"timeout": {"seconds": 3601}}, "between 1s and 3600s"),
        ("ok-image", {"containers": [{"image": ""}]}, "image is required"),
    ],
)
def test_create_service_validates_as_google_does(run, service_id, template, message):
    body = {"containers": [{"image": "x"}], **template}
    with pytest.raises(exceptions.BadRequest) as info:
        run.create_service(parent=PARENT, service_id=service_id, service={"template": body})
    assert message in info.value.message


def test_unknown_service_field_is_rejected():
    status, body = call(
        f"/v2/{PARENT}/services?serviceId=x1",
        {"template": {"containers": [{"image": "x", "colour": 1}]}},
    )
    assert status == 400 and 'Unknown name "colour"' in body["error"]["message"]


def test_missing_secret_fails_the_revision(run, image):
    service_id = unique("nosecret")
    env = [
        {
            "name": "API_KEY",
            "value_source": {"secret_key_ref": {"secret": unique("absent"), "version": "latest"}},
        }
    ]
    with pytest.raises(exceptions.FailedPrecondition) as info:
        deploy(run, service_id, image, containers=[{"image": image, "env": env}])
    assert "SECRETS_ACCESS_CHECK_FAILED" in info.value.message


def test_build_logs_reach_logging(tmp_path):
    result = build(service_folder(tmp_path), image_name("logged", "v1"))
    lines = [
        e["textPayload"]
        for e in entries(f'resource.type="build" AND resource.labels.build_id="{result.id}"')
    ]
    assert any(line.startswith("Step 1/") for line in lines) and lines[-1] == "DONE"
    assert any(line.startswith("PUSH ") for line in lines)
