"""Cloud Run jobs on localcloud through the official clients: jobs, executions, tasks, logs.

One image is built through Cloud Build from a tiny folder whose task script prints what it sees
(CLOUD_RUN_TASK_INDEX, ...) as JSON lines, then succeeds, fails, fails once, or sleeps, as its
MODE variable says. Scheduler reaches `jobs/J:run` with an OAuth token minted by localcloud.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
import uuid
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging
from google.cloud import run_v2, scheduler_v1, secretmanager_v1, storage
from google.cloud.devtools import cloudbuild_v1
from lc import PARENT, PROJECT, build, call, client_kwargs, entries, image_name, server, unique

from opslib.localcloud import control

SA = f"scheduler@{PROJECT}.iam.gserviceaccount.com"
RUN_API = "https://run.googleapis.com/v2"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ATTEMPT_FINISHED = "type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished"
DOCKERFILE = """FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
CMD ["python", "task.py"]
"""
TASK = '''"""A job task: say what it sees, then do what MODE says."""
import json
import os
import sys
import time

index = int(os.environ["CLOUD_RUN_TASK_INDEX"])
attempt = int(os.environ["CLOUD_RUN_TASK_ATTEMPT"])
mode = os.environ.get("MODE", "ok")
names = ("CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_COUNT", "GREETING")
seen = {name: os.environ.get(name) for name in names}
print(json.dumps({"severity": "INFO", "message": "start", "index": index, "attempt": attempt,
                  **seen}))
if mode == "sleep":
    time.sleep(float(os.environ.get("SECONDS", "60")))
if mode == "flaky" and index == 1 and attempt == 0:
    print(json.dumps({"severity": "ERROR", "message": "flaky once"}))
    sys.exit(3)
if mode == "fail" and index == 0:
    print("shard 0 cannot reach the archive", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"severity": "INFO", "message": "end", "index": index}))
'''


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "task.py").write_text(TASK)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    name = image_name("job-task", "v1")
    result = build(write_folder(tmp_path_factory.mktemp("job") / "src"), name)
    assert result.status == cloudbuild_v1.Build.Status.SUCCESS
    return name


@pytest.fixture(scope="module")
def jobs() -> run_v2.JobsClient:
    return run_v2.JobsClient(**client_kwargs())


@pytest.fixture(scope="module")
def executions() -> run_v2.ExecutionsClient:
    return run_v2.ExecutionsClient(**client_kwargs())


def job_body(image: str, env: dict[str, str] | None = None, **template) -> dict:
    task = {
        "containers": [
            {"image": image, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
        ],
        "max_retries": template.pop("max_retries", 0),
        **({"timeout": template.pop("timeout")} if "timeout" in template else {}),
    }
    return {"template": {**template, "template": task}}


def create(jobs: run_v2.JobsClient, image: str, env: dict | None = None, **template) -> run_v2.Job:
    operation = jobs.create_job(
        parent=PARENT, job_id=unique("job"), job=job_body(image, env, **template)
    )
    return operation.result(timeout=60)


def execution_lines(execution: run_v2.Execution) -> list[dict]:
    short = execution.name.rsplit("/", 1)[-1]
    return entries(
        f'resource.type="cloud_run_job" AND labels."run.googleapis.com/execution_name"="{short}"'
    )


def completed(execution: run_v2.Execution) -> run_v2.Condition:
    return next(c for c in execution.conditions if c.type_ == "Completed")


def test_create_get_list_update_delete_are_long_running_operations(jobs, image):
    operation = jobs.create_job(
        parent=PARENT, job_id=unique("crud"), job=job_body(image, task_count=2)
    )
    assert isinstance(operation.metadata, run_v2.Job) and operation.metadata.reconciling
    job = operation.result(timeout=60)
    assert job.generation == 1 and job.uid and job.create_time and job.etag
    assert job.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert job.template.task_count == 2 and job.template.template.max_retries == 0
    assert job.template.template.timeout.total_seconds() == 600  # Cloud Run's default
    assert job.template.template.service_account.endswith("-compute@developer.gserviceaccount.com")
    assert jobs.get_job(name=job.name).uid == job.uid
    assert job.name in {j.name for j in jobs.list_jobs(parent=PARENT)}
    job.template.task_count = 3
    updated = jobs.update_job(job=job).result(timeout=60)
    assert updated.generation == 2 and updated.template.task_count == 3
    assert updated.observed_generation == 2
    with pytest.raises(exceptions.Conflict):
        jobs.create_job(parent=PARENT, job_id=job.name.rsplit("/", 1)[-1], job=job_body(image))
    deleted = jobs.delete_job(name=job.name).result(timeout=60)
    assert deleted.name == job.name
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=job.name)


def test_a_job_whose_image_localcloud_did_not_build_fails_its_operation(jobs):
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        create(jobs, image_name("never-built", "v9"))
    assert "Image '" in info.value.message and "not found" in info.value.message


def test_four_tasks_two_at_a_time_each_see_their_index_and_count(jobs, executions, image):
    job = create(
        jobs,
        image,
        {"MODE": "sleep", "SECONDS": "0.8", "GREETING": "hi"},
        task_count=4,
        parallelism=2,
    )
    operation = jobs.run_job(name=job.name)
    running = operation.metadata  # the Execution, from the first answer on
    short = running.name.rsplit("/", 1)[-1]
    assert re.fullmatch(re.escape(job.name.rsplit("/", 1)[-1]) + r"-[a-z0-9]{5}", short)
    assert running.task_count == 4 and running.parallelism == 2
    execution = operation.result(timeout=60)
    assert execution.succeeded_count == 4 and not execution.failed_count
    assert completed(execution).state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert executions.get_execution(name=execution.name).completion_time
    tasks = list(run_v2.TasksClient(**client_kwargs()).list_tasks(parent=execution.name))
    assert [t.name.rsplit("/", 1)[-1] for t in tasks] == [f"{short}-task{i}" for i in range(4)]
    lines = execution_lines(execution)
    starts = {e["jsonPayload"]["index"]: e for e in lines if e["jsonPayload"]["message"] == "start"}
    assert sorted(starts) == [0, 1, 2, 3]
    for index, entry in starts.items():
        assert entry["labels"]["run.googleapis.com/task_index"] == str(index)
        seen = entry["jsonPayload"]
        assert seen["CLOUD_RUN_TASK_COUNT"] == "4" and seen["CLOUD_RUN_EXECUTION"] == short
        assert seen["CLOUD_RUN_JOB"] == job.name.rsplit("/", 1)[-1] and seen["GREETING"] == "hi"
    assert _most_at_once(lines) == 2
    latest = jobs.get_job(name=job.name).latest_created_execution
    assert latest.name == execution.name
    assert (
        latest.completion_status == run_v2.ExecutionReference.CompletionStatus.EXECUTION_SUCCEEDED
    )


def _most_at_once(lines: list[dict]) -> int:
    """How many tasks ran at the same time, from their start and end lines."""
    events = sorted(
        (e["timestamp"], 1 if e["jsonPayload"]["message"] == "start" else -1) for e in lines
    )
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_a_task_that_fails_once_succeeds_on_its_retry(jobs, image):
    job = create(jobs, image, {"MODE": "flaky"}, task_count=2, max_retries=1)
    execution = jobs.run_job(name=job.name).result(timeout=60)
    assert execution.succeeded_count == 2 and execution.retried_count == 1
    assert not execution.failed_count
    tasks = {
        t.index: t for t in run_v2.TasksClient(**client_kwargs()).list_tasks(parent=execution.name)
    }
    assert tasks[1].retried == 1 and tasks[0].retried == 0
    assert not tasks[1].last_attempt_result.status.code
    attempts = [
        e["labels"]["run.googleapis.com/task_attempt"]
        for e in execution_lines(execution)
        if e["labels"]["run.googleapis.com/task_index"] == "1"
        and e["jsonPayload"]["message"] == "start"
    ]
    assert attempts == ["0", "1"]


def test_a_task_that_exhausts_its_retries_fails_the_execution(jobs, executions, image):
    job = create(jobs, image, {"MODE": "fail"}, task_count=2, max_retries=1)
    operation = jobs.run_job(name=job.name)
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        operation.result(timeout=60)
    short = operation.metadata.name.rsplit("/", 1)[-1]
    assert info.value.message == (
        f"Task {short}-task0 failed with exit code: 2 and message: "
        "The container exited with an error."
    )
    execution = executions.get_execution(name=operation.metadata.name)
    assert execution.failed_count == 1 and execution.succeeded_count == 1
    assert execution.retried_count == 1
    assert (
        completed(execution).execution_reason == run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE
    )
    task = run_v2.TasksClient(**client_kwargs()).get_task(
        name=f"{execution.name}/tasks/{short}-task0"
    )
    assert task.retried == 1 and task.last_attempt_result.exit_code == 2
    assert task.last_attempt_result.status.message == "The container exited with an error."
    status = jobs.get_job(name=job.name).latest_created_execution.completion_status
    assert status == run_v2.ExecutionReference.CompletionStatus.EXECUTION_FAILED
    stderr = [e for e in execution_lines(execution) if e["logName"].endswith("%2Fstderr")]
    assert [(e["textPayload"], e["severity"]) for e in stderr] == [
        ("shard 0 cannot reach the archive", "DEFAULT")
    ] * 2


def test_a_task_past_its_timeout_is_stopped(jobs, image):
    job = create(jobs, image, {"MODE": "sleep", "SECONDS": "60"}, timeout="1s")
    started = time.monotonic()
    operation = jobs.run_job(name=job.name)
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        operation.result(timeout=60)
    assert time.monotonic() - started < 8
    assert info.value.message.endswith(
        "failed with exit code: 0 and message: The configured timeout was reached."
    )
    execution = operation.metadata
    task = next(iter(run_v2.TasksClient(**client_kwargs()).list_tasks(parent=execution.name)))
    assert task.last_attempt_result.status.code == 4 and task.last_attempt_result.term_signal == 15


def test_cancel_stops_the_running_task_and_skips_the_others(jobs, executions, image):
    job = create(jobs, image, {"MODE": "sleep", "SECONDS": "60"}, task_count=3, parallelism=1)
    run = jobs.run_job(name=job.name)
    name = run.metadata.name
    deadline = time.monotonic() + 30
    while not execution_lines(run.metadata) and time.monotonic() < deadline:
        time.sleep(0.1)  # task 0 has started (and said so)
    assert executions.get_execution(name=name).running_count == 1
    started = time.monotonic()
    cancelled = executions.cancel_execution(name=name).result(timeout=60)
    assert time.monotonic() - started < 8
    assert cancelled.cancelled_count == 3 and not cancelled.running_count
    assert completed(cancelled).execution_reason == run_v2.Condition.ExecutionReason.CANCELLED
    assert run.result(timeout=60).name == name  # a cancelled execution is no error
    lines = execution_lines(cancelled)
    assert [e["labels"]["run.googleapis.com/task_index"] for e in lines] == ["0"]
    with pytest.raises(exceptions.BadRequest):
        executions.cancel_execution(name=name)


def test_secrets_reach_the_tasks_and_a_missing_one_fails_the_execution(jobs, image):
    secrets = secretmanager_v1.SecretManagerServiceClient(**client_kwargs())
    secret_id = unique("greeting")
    secret = secrets.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id=secret_id,
        secret={"replication": {"automatic": {}}},
    )
    secrets.add_secret_version(parent=secret.name, payload={"data": b"from-secret"})
    ref = {"secret_key_ref": {"secret": secret_id, "version": "latest"}}
    body = job_body(image)
    body["template"]["template"]["containers"][0]["env"] = [
        {"name": "GREETING", "value_source": ref}
    ]
    job = jobs.create_job(parent=PARENT, job_id=unique("secret"), job=body).result(timeout=60)
    execution = jobs.run_job(name=job.name).result(timeout=60)
    start = next(e for e in execution_lines(execution) if e["jsonPayload"]["message"] == "start")
    assert start["jsonPayload"]["GREETING"] == "from-secret"
    ref["secret_key_ref"]["secret"] = unique("absent")
    job = jobs.create_job(parent=PARENT, job_id=unique("nosecret"), job=body).result(timeout=60)
    operation = jobs.run_job(name=job.name)
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        operation.result(timeout=60)
    assert "SECRETS_ACCESS_CHECK_FAILED" in info.value.message
    resources = operation.metadata.conditions[0]
    assert resources.type_ == "ResourcesAvailable"
    assert resources.reason == run_v2.Condition.CommonReason.SECRETS_ACCESS_CHECK_FAILED


def test_logs_are_read_by_execution_and_task_index_through_the_logging_client(jobs, image):
    job = create(jobs, image, task_count=3)
    execution = jobs.run_job(name=job.name).result(timeout=60)
    short = execution.name.rsplit("/", 1)[-1]
    client = cloud_logging.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        _use_grpc=False,
        client_options={"api_endpoint": server().url},
    )
    found = list(
        client.list_entries(
            filter_=(
                'resource.type="cloud_run_job" '
                f'AND resource.labels.job_name="{job.name.rsplit("/", 1)[-1]}" '
                f'AND labels."run.googleapis.com/execution_name"="{short}" '
                'AND labels."run.googleapis.com/task_index"="2"'
            )
        )
    )
    assert [e.payload["message"] for e in found] == ["start", "end"]
    assert all(e.payload["index"] == 2 and e.severity == "INFO" for e in found)
    assert found[0].log_name == f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout"
    assert found[0].resource.labels == {
        "project_id": PROJECT,
        "job_name": job.name.rsplit("/", 1)[-1],
        "location": PARENT.rsplit("/", 1)[-1],
    }


def grant(jobs: run_v2.JobsClient, job: run_v2.Job, role: str = "roles/run.invoker") -> None:
    policy = jobs.get_iam_policy(request={"resource": job.name})
    policy.bindings.add(role=role, members=[f"serviceAccount:{SA}"])
    jobs.set_iam_policy(request={"resource": job.name, "policy": policy})


def fire(target: dict) -> scheduler_v1.Job:
    """Create a Scheduler job with this HTTP target, run it once, and answer it afterwards."""
    sc = scheduler_v1.CloudSchedulerClient(**client_kwargs())
    job = sc.create_job(
        parent=PARENT,
        job={
            "name": f"{PARENT}/jobs/{unique('fire')}",
            "schedule": "0 0 1 1 *",
            "http_target": target,
        },
    )
    try:
        sc.run_job(name=job.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not sc.get_job(name=job.name).last_attempt_time:
            time.sleep(0.1)
        return sc.get_job(name=job.name)
    finally:
        sc.delete_job(name=job.name)  # other tests move the clock past 1 January


def attempts_finished(scheduler_job_id: str) -> list[dict]:
    """The Scheduler job's AttemptFinished log entries."""
    return entries(
        f'resource.type="cloud_scheduler_job" AND resource.labels.job_id="{scheduler_job_id}" '
        f'AND jsonPayload."@type"="{ATTEMPT_FINISHED}"'
    )


def run_target(job: run_v2.Job, body: bytes = b"{}", **token) -> dict:
    return {
        "uri": f"{RUN_API}/{job.name}:run",
        "http_method": scheduler_v1.HttpMethod.POST,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        **token,
    }


def test_scheduler_with_an_oauth_token_starts_an_execution(jobs, executions, image):
    job = create(jobs, image)
    grant(jobs, job)
    fired = fire(run_target(job, oauth_token={"service_account_email": SA}))
    assert fired.status.code == 0, fired.status
    assert fired.http_target.oauth_token.scope == "https://www.googleapis.com/auth/cloud-platform"
    started = list(executions.list_executions(parent=job.name))
    assert len(started) == 1 and started[0].creator == SA
    deadline = time.monotonic() + 30
    while not executions.get_execution(name=started[0].name).completion_time:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert executions.get_execution(name=started[0].name).succeeded_count == 1
    short = fired.name.rsplit("/", 1)[-1]
    finished = attempts_finished(short)
    assert finished[0]["severity"] == "INFO" and finished[0]["httpRequest"]["status"] == 200


@pytest.mark.parametrize(
    ("role", "token", "body", "code"),
    [
        (None, "oauth", b"{}", 7),  # no run.jobs.run on the job: PERMISSION_DENIED
        ("roles/run.invoker", "oauth", b'{"overrides": {"taskCount": 2}}', 7),
        ("roles/run.invoker", "oidc", b"{}", 16),  # Google APIs refuse ID tokens
    ],
)
def test_scheduler_is_refused_without_the_role_or_with_an_id_token(
    jobs, executions, image, role, token, body, code
):
    job = create(jobs, image)
    if role:
        grant(jobs, job, role)
    tokens = {
        "oauth": {"oauth_token": {"service_account_email": SA}},
        "oidc": {"oidc_token": {"service_account_email": SA, "audience": RUN_API}},
    }
    fired = fire(run_target(job, body, **tokens[token]))
    assert fired.status.code == code
    assert not list(executions.list_executions(parent=job.name))
    short = fired.name.rsplit("/", 1)[-1]
    finished = attempts_finished(short)
    assert finished[-1]["severity"] == "ERROR"
    assert finished[-1]["httpRequest"]["status"] == {7: 403, 16: 401}[code]


def post(path: str, body: dict, bearer: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    request = Request(server().url + path, json.dumps(body).encode(), headers, method="POST")
    try:
        with urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def access_token(email: str, scope: str = CLOUD_PLATFORM) -> str:
    return call("/_localcloud/token", {"email": email, "scope": scope})[1]["token"]


def test_run_checks_the_callers_token_scope_and_role(jobs, image):
    job = create(jobs, image)
    path = f"/v2/{job.name}:run"
    other = f"other@{PROJECT}.iam.gserviceaccount.com"
    status, body = post(path, {}, access_token(SA))
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    assert body["error"]["message"] == (
        f"Permission 'run.jobs.run' denied on resource '{job.name}' (or resource may not exist)."
    )
    grant(jobs, job, "roles/run.jobsExecutor")
    assert post(path, {}, access_token(other))[0] == 403  # the role is SA's, not other's
    email_only = access_token(SA, "https://www.googleapis.com/auth/userinfo.email")
    status, body = post(path, {}, email_only)
    assert status == 403 and "insufficient authentication scopes" in body["error"]["message"]
    id_token = call("/_localcloud/token", {"email": SA, "audience": RUN_API})[1]["token"]
    for bad in (id_token, "e30.e30.not-signed"):
        status, body = post(path, {}, bad)
        assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    status, body = post(path, {}, access_token(SA))
    assert status == 200 and body["metadata"]["@type"].endswith("google.cloud.run.v2.Execution")
    assert body["metadata"]["creator"] == SA and body["done"] is False
    status, body = post(path, {"overrides": {"taskCount": 2}}, access_token(SA))
    assert status == 403 and "run.jobs.runWithOverrides" in body["error"]["message"]
    assert post(path, {"overrides": {"taskCount": 2}}, None)[0] == 200  # no token: not checked


def test_run_overrides_apply_to_that_execution_only(jobs, image):
    job = create(jobs, image, {"MODE": "fail", "GREETING": "hi"}, task_count=3)
    execution = jobs.run_job(
        request={
            "name": job.name,
            "overrides": {
                "task_count": 1,
                "timeout": "30s",
                "container_overrides": [{"env": [{"name": "MODE", "value": "ok"}]}],
            },
        }
    ).result(timeout=60)
    assert execution.task_count == 1 and execution.succeeded_count == 1
    assert execution.template.timeout.total_seconds() == 30
    env = {e.name: e.value for e in execution.template.containers[0].env}
    assert env == {"MODE": "ok", "GREETING": "hi"}
    live = jobs.get_job(name=job.name)
    assert live.template.task_count == 3 and live.execution_count == 1


@pytest.mark.parametrize(
    ("job_id", "template", "message"),
    [
        ("Bad_Id", {}, "only lowercase, digits, and hyphens"),
        ("x" * 64, {}, "must be less than 64 characters"),
        ("ok-timeout", {"timeout": "90000s"}, "launch stage"),
        ("ok-timeout", {"timeout": "700000s"}, "between 1s and 604800s"),
        ("ok-retries", {"max_retries": 11}, "max_retries must be between 0 and 10"),
        ("ok-tasks", {"task_count": 2, "parallelism": 3}, "parallelism must be between 0"),
        ("ok-env", {"env": {"CLOUD_RUN_TASK_INDEX": "9"}}, "reserved env names"),
    ],
)
def test_create_job_validates_as_google_does(jobs, job_id, template, message):
    env = template.pop("env", None)
    body = job_body("x", env, **template)
    with pytest.raises(exceptions.BadRequest) as info:
        jobs.create_job(parent=PARENT, job_id=job_id, job=body)
    assert message in info.value.message


def test_a_preview_launch_stage_allows_a_task_timeout_over_24_hours(jobs, image):
    operation = jobs.create_job(
        parent=PARENT,
        job_id=unique("long"),
        job={**job_body(image, timeout="172800s"), "launch_stage": "BETA"},
    )
    assert operation.result(timeout=60).template.template.timeout.total_seconds() == 172800


def test_validate_only_answers_the_defaults_google_fills_and_creates_nothing(jobs):
    body = {"template": {"template": {"containers": [{"image": "x"}]}}}
    status, answer = call(f"/v2/{PARENT}/jobs?jobId=defaults&validateOnly=true", body)
    assert status == 200 and answer["done"] is True
    job = answer["response"]
    assert job["template"]["taskCount"] == 1 and job["launchStage"] == "GA"
    task = job["template"]["template"]
    assert task["maxRetries"] == 3 and task["timeout"] == "600s"
    assert task["containers"][0]["resources"]["limits"] == {"cpu": "1000m", "memory": "512Mi"}
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=f"{PARENT}/jobs/defaults")


def test_unknown_job_fields_are_rejected():
    body = {"template": {"template": {"containers": [{"image": "x"}], "colour": "red"}}}
    status, answer = call(f"/v2/{PARENT}/jobs?jobId=unknown-field", body)
    assert status == 400 and 'Unknown name "colour"' in answer["error"]["message"]
    status, answer = call(f"/v2/{PARENT}/jobs/nope:run", {"overrides": {"tasks": 2}})
    assert status == 400 and 'Unknown name "tasks"' in answer["error"]["message"]


def _clients(url: str) -> dict:
    return {
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=url),
        "credentials": AnonymousCredentials(),
    }


def _build_on(url: str, folder: Path, image: str) -> None:
    """Cloud Build of `folder` on another localcloud (the session's one is lc.build's)."""
    gcs = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    bucket = gcs.create_bucket(f"{PROJECT}_cloudbuild")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        archive.add(folder, arcname=".")
    name = f"source/{uuid.uuid4().hex}.tgz"
    bucket.blob(name).upload_from_string(data.getvalue(), content_type="application/gzip")
    step = {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]}
    build_request = {
        "source": {"storage_source": {"bucket": bucket.name, "object_": name}},
        "steps": [step],
        "images": [image],
    }
    cloudbuild_v1.CloudBuildClient(**_clients(url)).create_build(
        project_id=PROJECT, build=build_request
    ).result(timeout=180)


def test_restart_keeps_jobs_and_finished_executions_and_cancels_running_ones(tmp_path):
    state = tmp_path / "state"
    url = control.start(state, port=0).url
    try:
        image = image_name("restart", "v1")
        _build_on(url, write_folder(tmp_path / "src"), image)
        jobs = run_v2.JobsClient(**_clients(url))
        create_op = jobs.create_job(parent=PARENT, job_id="kept", job=job_body(image))
        job = create_op.result(timeout=60)
        done = jobs.run_job(name=job.name).result(timeout=60)
        sleeper = jobs.create_job(
            parent=PARENT, job_id="sleeper", job=job_body(image, {"MODE": "sleep"})
        ).result(timeout=60)
        running = jobs.run_job(name=sleeper.name).metadata.name
        control.stop(state)
        url = control.start(state, port=0).url
        jobs = run_v2.JobsClient(**_clients(url))
        executions = run_v2.ExecutionsClient(**_clients(url))
        assert jobs.get_job(name=job.name).uid == job.uid
        assert executions.get_execution(name=done.name).succeeded_count == 1
        stopped = executions.get_execution(name=running)
        assert stopped.cancelled_count == 1 and stopped.completion_time
        assert completed(stopped).execution_reason == run_v2.Condition.ExecutionReason.CANCELLED
        assert "localcloud stopped" in completed(stopped).message
        rerun = jobs.run_job(name=job.name).result(timeout=60)  # the image is still there
        assert rerun.succeeded_count == 1
        control.stop(state)
        _as_if_killed_while_running(state / "runjobs.json", rerun.name)
        url = control.start(state, port=0).url
        jobs = run_v2.JobsClient(**_clients(url))
        crashed = run_v2.ExecutionsClient(**_clients(url)).get_execution(name=rerun.name)
        assert crashed.cancelled_count == 1 and "localcloud stopped" in completed(crashed).message
        _reset(url)
        assert not list(jobs.list_jobs(parent=PARENT))
    finally:
        control.stop(state)


def _as_if_killed_while_running(path: Path, execution: str) -> None:
    """Rewrite the state as a localcloud killed (SIGKILL) mid-execution leaves it."""
    data = json.loads(path.read_text())
    record = data["executions"][execution]
    del record["completionTime"]
    record["conditions"][-1]["state"] = "CONDITION_RECONCILING"
    for task in data["tasks"][execution]:
        task["_state"] = "RUNNING"
    path.write_text(json.dumps(data))


def _reset(url: str) -> None:
    with urlopen(Request(url + "/_localcloud/reset", b"{}", method="POST"), timeout=60) as answer:
        assert json.loads(answer.read()) == {"status": "reset"}
