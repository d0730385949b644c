"""Every field of every answer localcloud gives, checked against Google's discovery documents.

A real localcloud (tests/lc.py) builds an image, deploys a service with two revisions, runs a
Cloud Run job, fires a Scheduler job at the service, keeps secrets with versions and writes
logs of every kind it writes. Each answer, raw JSON as a client receives it, is checked with
tests/discovery.py against the response schema of its method in the document
google-api-python-client ships (run.v2, cloudscheduler.v1, logging.v2, secretmanager.v1,
cloudbuild.v1, storage.v1, monitoring.v3): unknown fields, JSON types, int64 as strings, enums,
times, durations and base64. The last tests plant mistakes in real answers and show each reported.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from discovery import Report, check
from lc import PARENT, PROJECT, call, server, token, unique, upload_source

SA = f"scheduler@{PROJECT}.iam.gserviceaccount.com"
DOCKERFILE = 'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "app.py"]\n'
APP = """import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        line = {"severity": "WARNING", "message": "served", "path": self.path,
                "logging.googleapis.com/labels": {"handler": "app"}}
        print(json.dumps(line), flush=True)
        print("a plain line on stderr", file=sys.stderr, flush=True)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass

print("listening", flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
TASK = """import json, os, sys
index = os.environ["CLOUD_RUN_TASK_INDEX"]
print(json.dumps({"severity": "INFO", "message": "task", "index": index}))
print("task text on stderr", file=sys.stderr)
"""


class Answers:
    """Raw answers (document, method id, JSON), gathered once for the module."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, object]] = []
        self.ids: dict[str, str] = {}

    def add(self, doc: str, method: str, answer: object) -> object:
        self.items.append((doc, method, answer))
        return answer

    def call(self, doc: str, method: str, path: str, body=None, verb=None) -> dict:
        status, answer = call(path, body, verb)
        assert status == 200, (method, answer)
        return self.add(doc, method, answer)  # type: ignore[return-value]


def raw(path: str, data: bytes, content_type: str) -> dict:
    request = Request(
        server().url + path, data=data, method="POST", headers={"Content-Type": content_type}
    )
    with urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_operation(got: Answers, doc: str, method: str, path: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = got.call(doc, method, path)
        if answer.get("done"):
            return answer
        time.sleep(0.3)
    raise AssertionError(f"{path} did not finish")


def gather_build_and_storage(got: Answers, folder: Path) -> str:
    """A finished build of `folder` (raw calls); the bucket and objects it used."""
    bucket, obj = upload_source(folder)
    image = f"asia-northeast3-docker.pkg.dev/{PROJECT}/opslib/{unique('disc')}:v1"
    steps = [{"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]}]
    body = {"source": {"storageSource": {"bucket": bucket, "object": obj}}, "steps": steps}
    op = got.call(
        "cloudbuild.v1",
        "cloudbuild.projects.builds.create",
        f"/v1/projects/{PROJECT}/builds",
        {**body, "images": [image]},
    )
    done = wait_operation(got, "cloudbuild.v1", "cloudbuild.operations.get", f"/v1/{op['name']}")
    build_id = done["response"]["id"]
    got.ids["build"] = build_id
    got.call(
        "cloudbuild.v1",
        "cloudbuild.projects.builds.get",
        f"/v1/projects/{PROJECT}/builds/{build_id}",
    )
    got.call("cloudbuild.v1", "cloudbuild.projects.builds.list", f"/v1/projects/{PROJECT}/builds")
    name = unique("disc-bucket")
    got.call(
        "storage.v1", "storage.buckets.insert", f"/storage/v1/b?project={PROJECT}", {"name": name}
    )
    got.add(
        "storage.v1",
        "storage.objects.insert",
        raw(f"/upload/storage/v1/b/{name}/o?uploadType=media&name=a%2Fb.txt", b"hi", "text/plain"),
    )
    got.call("storage.v1", "storage.buckets.get", f"/storage/v1/b/{bucket}")
    got.call("storage.v1", "storage.buckets.list", f"/storage/v1/b?project={PROJECT}")
    got.call("storage.v1", "storage.objects.list", f"/storage/v1/b/{name}/o")
    got.call("storage.v1", "storage.objects.get", f"/storage/v1/b/{name}/o/a%2Fb.txt")
    return image


def gather_secrets(got: Answers) -> str:
    secret_id = unique("disc-secret")
    base = f"/v1/projects/{PROJECT}/secrets"
    doc, m = "secretmanager.v1", "secretmanager.projects.secrets."
    got.call(
        doc,
        m + "create",
        f"{base}?secretId={secret_id}",
        {"replication": {"automatic": {}}, "labels": {"team": "ops"}},
    )
    for value in (b"first", b"second"):
        data = {"payload": {"data": __import__("base64").b64encode(value).decode()}}
        got.call(doc, m + "addVersion", f"{base}/{secret_id}:addVersion", data)
    got.call(doc, m + "versions.disable", f"{base}/{secret_id}/versions/1:disable", {})
    got.call(doc, m + "get", f"{base}/{secret_id}")
    got.call(doc, m + "list", base)
    got.call(doc, m + "versions.list", f"{base}/{secret_id}/versions")
    got.call(doc, m + "versions.get", f"{base}/{secret_id}/versions/2")
    got.call(doc, m + "versions.access", f"{base}/{secret_id}/versions/latest:access")
    got.call(doc, m + "versions.destroy", f"{base}/{secret_id}/versions/1:destroy", {})
    return secret_id


def gather_service(got: Answers, image: str, secret_id: str) -> dict:
    """A service with two revisions, its IAM policy, and requests through its front."""
    doc, m = "run.v2", "run.projects.locations."
    service_id = unique("disc")
    got.ids["service"] = service_id
    env = [
        {"name": "KEY", "valueSource": {"secretKeyRef": {"secret": secret_id, "version": "latest"}}}
    ]
    template = {"containers": [{"image": image, "env": env}], "scaling": {"maxInstanceCount": 2}}
    op = got.call(
        doc,
        m + "services.create",
        f"/v2/{PARENT}/services?serviceId={service_id}",
        {"template": template, "labels": {"team": "ops"}},
    )
    wait_operation(got, doc, m + "operations.get", f"/v2/{op['name']}")
    name = f"{PARENT}/services/{service_id}"
    template["containers"][0]["env"].append({"name": "MODE", "value": "two"})
    op = got.call(doc, m + "services.patch", f"/v2/{name}", {"template": template}, "PATCH")
    wait_operation(got, doc, m + "operations.get", f"/v2/{op['name']}")
    service = got.call(doc, m + "services.get", f"/v2/{name}")
    got.call(doc, m + "services.list", f"/v2/{PARENT}/services")
    revisions = got.call(doc, m + "services.revisions.list", f"/v2/{name}/revisions")
    for revision in revisions["revisions"]:
        got.call(doc, m + "services.revisions.get", f"/v2/{revision['name']}")
    got.call(doc, m + "operations.list", f"/v2/{PARENT}/operations")
    policy = got.call(doc, m + "services.getIamPolicy", f"/v2/{name}:getIamPolicy")
    policy["bindings"] = [{"role": "roles/run.invoker", "members": [f"serviceAccount:{SA}"]}]
    got.call(doc, m + "services.setIamPolicy", f"/v2/{name}:setIamPolicy", {"policy": policy})
    got.call(
        doc,
        m + "services.testIamPermissions",
        f"/v2/{name}:testIamPermissions",
        {"permissions": ["run.services.get"]},
    )
    bearer = token(service["uri"], SA)
    for headers in ({}, {"Authorization": f"Bearer {bearer}"}):
        request = Request(service["uri"] + "/hello", headers=headers)
        with contextlib.suppress(OSError):  # the 403 without a token is logged too
            urlopen(request, timeout=60).read()
    return service


def gather_job(got: Answers, image: str) -> None:
    """A Cloud Run job with one finished execution of two tasks."""
    doc, m = "run.v2", "run.projects.locations.jobs."
    job_id = unique("disc-job")
    got.ids["job"] = job_id
    container = {"image": image, "command": ["python"], "args": ["-c", TASK]}
    body = {"template": {"taskCount": 2, "template": {"containers": [container], "maxRetries": 1}}}
    op = got.call(doc, m + "create", f"/v2/{PARENT}/jobs?jobId={job_id}", body)
    wait_operation(got, doc, "run.projects.locations.operations.get", f"/v2/{op['name']}")
    name = f"{PARENT}/jobs/{job_id}"
    op = got.call(doc, m + "run", f"/v2/{name}:run", {})
    done = wait_operation(got, doc, "run.projects.locations.operations.get", f"/v2/{op['name']}")
    execution = done["response"]["name"]
    got.call(doc, m + "get", f"/v2/{name}")
    got.call(doc, m + "list", f"/v2/{PARENT}/jobs?pageSize=1")
    got.call(doc, m + "getIamPolicy", f"/v2/{name}:getIamPolicy")
    got.call(doc, m + "executions.get", f"/v2/{execution}")
    got.call(doc, m + "executions.list", f"/v2/{name}/executions")
    tasks = got.call(doc, m + "executions.tasks.list", f"/v2/{execution}/tasks")
    got.call(doc, m + "executions.tasks.get", f"/v2/{tasks['tasks'][0]['name']}")


def gather_scheduler(got: Answers, service: dict) -> None:
    """A Scheduler job that has fired at the service (status and lastAttemptTime set)."""
    doc, m = "cloudscheduler.v1", "cloudscheduler.projects.locations."
    job_id = unique("disc-sched")
    got.ids["scheduler"] = job_id
    name = f"{PARENT}/jobs/{job_id}"
    target = {
        "uri": service["uri"] + "/hello",
        "httpMethod": "POST",
        "body": "e30=",
        "headers": {"Content-Type": "application/json"},
        "oidcToken": {"serviceAccountEmail": SA, "audience": service["uri"]},
    }
    job = {
        "name": name,
        "schedule": "0 9 * * 1-5",
        "timeZone": "Asia/Seoul",
        "httpTarget": target,
        "retryConfig": {"retryCount": 1},
        "attemptDeadline": "60s",
    }
    got.call(doc, m + "jobs.create", f"/v1/{PARENT}/jobs", job)
    got.call(doc, m + "jobs.run", f"/v1/{name}:run", {})
    deadline = time.monotonic() + 60
    while "lastAttemptTime" not in call(f"/v1/{name}")[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    got.call(doc, m + "jobs.get", f"/v1/{name}")
    got.call(doc, m + "jobs.list", f"/v1/{PARENT}/jobs")
    got.call(doc, m + "jobs.pause", f"/v1/{name}:pause", {})
    got.call(
        doc,
        m + "jobs.patch",
        f"/v1/{name}?updateMask=description",
        {"description": "checked against discovery"},
        "PATCH",
    )
    got.call(doc, m + "jobs.resume", f"/v1/{name}:resume", {})
    got.call(doc, m + "list", f"/v1/projects/{PROJECT}/locations")
    got.call(doc, m + "get", f"/v1/{PARENT}")


def gather_failures(got: Answers, image: str, service: dict) -> None:
    """What failures look like: a failed build, a failed execution, a refused Scheduler
    attempt, and the Operations of deletes."""
    doc, m = "run.v2", "run.projects.locations."
    folder = Path(tempfile.mkdtemp(prefix="discovery-bad-"))
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\nRUN apt-get update\n")
    bucket, obj = upload_source(folder)
    body = {
        "source": {"storageSource": {"bucket": bucket, "object": obj}},
        "steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["build", "."]}],
    }
    op = got.call(
        "cloudbuild.v1", "cloudbuild.projects.builds.create", f"/v1/projects/{PROJECT}/builds", body
    )
    done = wait_operation(got, "cloudbuild.v1", "cloudbuild.operations.get", f"/v1/{op['name']}")
    assert "error" in done
    build_id = done["metadata"]["build"]["id"]
    got.call(
        "cloudbuild.v1",
        "cloudbuild.projects.builds.get",
        f"/v1/projects/{PROJECT}/builds/{build_id}",
    )
    job_id = unique("disc-fail")
    container = {"image": image, "command": ["python"], "args": ["-c", "exit(3)"]}
    body = {"template": {"template": {"containers": [container], "maxRetries": 0}}}
    op = got.call(doc, m + "jobs.create", f"/v2/{PARENT}/jobs?jobId={job_id}", body)
    wait_operation(got, doc, m + "operations.get", f"/v2/{op['name']}")
    op = got.call(doc, m + "jobs.run", f"/v2/{PARENT}/jobs/{job_id}:run", {})
    done = wait_operation(got, doc, m + "operations.get", f"/v2/{op['name']}")
    assert "error" in done
    execution = done["metadata"]["name"]
    got.call(doc, m + "jobs.executions.get", f"/v2/{execution}")
    got.call(doc, m + "jobs.executions.tasks.list", f"/v2/{execution}/tasks")
    got.call(doc, m + "jobs.executions.delete", f"/v2/{execution}", verb="DELETE")
    got.call(doc, m + "jobs.delete", f"/v2/{PARENT}/jobs/{job_id}", verb="DELETE")
    name = f"{PARENT}/jobs/{unique('disc-refused')}"
    job = {"name": name, "schedule": "0 9 * * *", "httpTarget": {"uri": service["uri"] + "/"}}
    got.call(
        "cloudscheduler.v1",
        "cloudscheduler.projects.locations.jobs.create",
        f"/v1/{PARENT}/jobs",
        job,
    )
    call(f"/v1/{name}:run", {})
    deadline = time.monotonic() + 60
    while "lastAttemptTime" not in call(f"/v1/{name}")[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    refused = got.call(
        "cloudscheduler.v1", "cloudscheduler.projects.locations.jobs.get", f"/v1/{name}"
    )
    assert refused["status"]["code"] == 7  # PERMISSION_DENIED: the front's 403


def gather_logs(got: Answers) -> list[dict]:
    """Every entry the above wrote, plus entries written through entries:write."""
    log = f"projects/{PROJECT}/logs/{unique('disc-log')}"
    written = [
        {
            "jsonPayload": {"a": 1, "nested": {"b": [1, "x"]}},
            "severity": "NOTICE",
            "httpRequest": {
                "requestMethod": "GET",
                "status": 404,
                "responseSize": 12,
                "latency": "0.25s",
            },
        },
        {"textPayload": "hello", "labels": {"k": "v"}, "severity": 300},
    ]
    got.call(
        "logging.v2",
        "logging.entries.write",
        "/v2/entries:write",
        {"logName": log, "resource": {"type": "global"}, "entries": written},
    )
    ids = got.ids
    mine = " OR ".join(
        [
            f'resource.labels.service_name="{ids["service"]}"',
            f'resource.labels.job_name="{ids["job"]}"',
            f'resource.labels.job_id="{ids["scheduler"]}"',
            f'resource.labels.build_id="{ids["build"]}"',
            f'logName="{log}"',
        ]
    )
    time.sleep(1)  # request logs are written just after the answer goes out
    body = {"resourceNames": [f"projects/{PROJECT}"], "filter": mine, "pageSize": 1000}
    answer = got.call("logging.v2", "logging.entries.list", "/v2/entries:list", body)
    got.call("logging.v2", "logging.entries.list", "/v2/entries:list", {**body, "pageSize": 2})
    return answer["entries"]


def gather_monitoring(got: Answers) -> None:
    """Channels and a log-match policy as gcloud sends them, the incident a line opens, deletes."""
    doc, m, base = "monitoring.v3", "monitoring.projects.", f"/v3/projects/{PROJECT}"
    channel = got.call(
        doc,
        m + "notificationChannels.create",
        f"{base}/notificationChannels",
        {
            "type": "webhook_tokenauth",
            "displayName": unique("disc-hook"),
            "labels": {"url": "http://127.0.0.1:9/unused"},
            "userLabels": {"opslib_job": "disc"},
        },
    )
    got.call(doc, m + "notificationChannels.get", f"/v3/{channel['name']}")
    got.call(doc, m + "notificationChannels.list", f"{base}/notificationChannels")
    got.call(
        doc,
        m + "notificationChannels.patch",
        f"/v3/{channel['name']}?updateMask=description",
        {"description": "patched"},
        "PATCH",
    )
    log = unique("disc-alert")
    policy = got.call(
        doc,
        m + "alertPolicies.create",
        f"{base}/alertPolicies",
        {
            "displayName": log,
            "combiner": "OR",
            "severity": "ERROR",
            "documentation": {
                "content": "run ${log.extracted_label.run}",
                "mimeType": "text/markdown",
            },
            "conditions": [
                {
                    "displayName": "errors",
                    "conditionMatchedLog": {
                        "filter": f'logName="projects/{PROJECT}/logs/{log}" AND severity>=ERROR',
                        "labelExtractors": {"run": "EXTRACT(jsonPayload.run)"},
                    },
                }
            ],
            "notificationChannels": [channel["name"]],
            "alertStrategy": {"notificationRateLimit": {"period": "300s"}, "autoClose": "1800s"},
        },
    )
    got.call(doc, m + "alertPolicies.get", f"/v3/{policy['name']}")
    got.call(doc, m + "alertPolicies.list", f"{base}/alertPolicies")
    got.call(
        doc,
        m + "alertPolicies.patch",
        f"/v3/{policy['name']}?updateMask=userLabels",
        {"userLabels": {"team": "ops"}},
        "PATCH",
    )
    entry = {"severity": "ERROR", "jsonPayload": {"run": "r-1", "message": "boom"}}
    call(
        "/v2/entries:write",
        {
            "logName": f"projects/{PROJECT}/logs/{log}",
            "resource": {"type": "global"},
            "entries": [entry],
        },
    )
    alerts = got.call(doc, m + "alerts.list", f"{base}/alerts?filter=state%3D%22OPEN%22")
    mine = [a for a in alerts["alerts"] if a["policy"]["name"] == policy["name"]]
    assert len(mine) == 1 and mine[0]["log"]["extractedLabels"] == {"run": "r-1"}
    got.call(doc, m + "alerts.get", f"/v3/{mine[0]['name']}")
    got.call(doc, m + "alertPolicies.delete", f"/v3/{policy['name']}", verb="DELETE")
    got.call(doc, m + "notificationChannels.delete", f"/v3/{channel['name']}", verb="DELETE")


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> tuple[Answers, list[dict]]:
    folder = tmp_path_factory.mktemp("discovery") / "src"
    folder.mkdir()
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "app.py").write_text(APP)
    got = Answers()
    image = gather_build_and_storage(got, folder)
    secret_id = gather_secrets(got)
    service = gather_service(got, image, secret_id)
    gather_job(got, image)
    gather_scheduler(got, service)
    gather_failures(got, image, service)
    logs = gather_logs(got)
    gather_monitoring(got)
    got.call(
        "run.v2", "run.projects.locations.services.delete", f"/v2/{service['name']}", verb="DELETE"
    )
    got.call(
        "secretmanager.v1",
        "secretmanager.projects.secrets.delete",
        f"/v1/projects/{PROJECT}/secrets/{secret_id}",
        verb="DELETE",
    )
    return got, logs


def test_every_answer_fits_googles_discovery_documents(gathered):
    got, _ = gathered
    report = Report()
    for doc, method, answer in got.items:
        report.add(check(doc, method, answer))
    print(f"{len(got.items)} answers, {report.values} values checked")
    assert report.problems == [], "\n".join(report.problems)
    resources = {method.rsplit(".", 1)[0] for _, method, _ in got.items}
    assert len(got.items) >= 60 and report.values > 2000
    assert {
        "run.projects.locations.services",
        "run.projects.locations.services.revisions",
        "run.projects.locations.jobs.executions.tasks",
        "run.projects.locations.operations",
        "cloudscheduler.projects.locations.jobs",
        "secretmanager.projects.secrets.versions",
        "cloudbuild.projects.builds",
        "logging.entries",
        "storage.buckets",
        "storage.objects",
        "monitoring.projects.notificationChannels",
        "monitoring.projects.alertPolicies",
        "monitoring.projects.alerts",
    } <= resources


def test_log_entries_of_every_kind_localcloud_writes_are_checked(gathered):
    _, logs = gathered
    kinds = {
        "request log with httpRequest": lambda e: (
            e["logName"].endswith("%2Frequests") and "httpRequest" in e
        ),
        "a JSON line from a service": lambda e: (
            e["logName"].endswith("%2Fstdout")
            and e["resource"]["type"] == "cloud_run_revision"
            and "jsonPayload" in e
        ),
        "a text line from a service": lambda e: (
            e["logName"].endswith("%2Fstderr") and "textPayload" in e
        ),
        "an instance start (varlog/system)": lambda e: "varlog%2Fsystem" in e["logName"],
        "Scheduler AttemptStarted": lambda e: "AttemptStarted" in str(e.get("jsonPayload")),
        "Scheduler AttemptFinished": lambda e: "AttemptFinished" in str(e.get("jsonPayload")),
        "a build log line": lambda e: e["resource"]["type"] == "build",
        "a job task's JSON line": lambda e: (
            e["resource"]["type"] == "cloud_run_job" and "jsonPayload" in e
        ),
        "a job task's text line": lambda e: (
            e["resource"]["type"] == "cloud_run_job" and "textPayload" in e
        ),
        "written through entries:write": lambda e: "disc-log" in e["logName"],
    }
    missing = [kind for kind, seen in kinds.items() if not any(seen(e) for e in logs)]
    assert missing == []
    problems = [
        p
        for e in logs
        for p in check("logging.v2", "logging.entries.list", {"entries": [e]}).problems
    ]
    assert problems == []


def _answer(gathered, method: str) -> dict:
    got, _ = gathered
    return copy.deepcopy(next(a for _, m, a in got.items if m == method))


@pytest.mark.parametrize(
    ("doc", "method", "plant", "expected"),
    [
        (
            "run.v2",
            "run.projects.locations.services.get",
            lambda a: a["template"]["containers"][0].update(colour="blue"),
            "run.projects.locations.services.get: $.template.containers[0].colour: "
            "unknown field (not in GoogleCloudRunV2Container)",
        ),
        (
            "run.v2",
            "run.projects.locations.services.get",
            lambda a: a.update(generation=int(a["generation"])),
            "$.generation: expected a string (int64 is sent as a string), got a number",
        ),
        (
            "run.v2",
            "run.projects.locations.services.get",
            lambda a: a.update(ingress="INGRESS_TRAFFIC_SOMETIMES"),
            "$.ingress: 'INGRESS_TRAFFIC_SOMETIMES' is not one of the enum values",
        ),
        (
            "run.v2",
            "run.projects.locations.services.get",
            lambda a: a.update(createTime="2026-13-01 09:00"),
            "$.createTime: '2026-13-01 09:00' is not an RFC 3339 time (google-datetime)",
        ),
        (
            "run.v2",
            "run.projects.locations.services.revisions.get",
            lambda a: a.update(timeout="300"),
            "$.timeout: '300' is not a google-duration",
        ),
        (
            "secretmanager.v1",
            "secretmanager.projects.secrets.versions.access",
            lambda a: a["payload"].update(data="not base64!"),
            "$.payload.data: 'not base64!' is not base64 (byte)",
        ),
        (
            "run.v2",
            "run.projects.locations.operations.get",
            lambda a: a["metadata"].update(imageDigest="sha256:00"),
            "$.metadata.imageDigest: unknown field (not in GoogleCloudRunV2Service)",
        ),
        (
            "cloudscheduler.v1",
            "cloudscheduler.projects.locations.jobs.list",
            lambda a: a["jobs"][0]["retryConfig"].update(retryCount="1"),
            "$.jobs[0].retryConfig.retryCount: expected an integer (int32) as a JSON number",
        ),
    ],
)
def test_the_checker_reports_a_planted_mistake(gathered, doc, method, plant, expected):
    answer = _answer(gathered, method)
    assert check(doc, method, answer).problems == [], "the real answer is clean"
    plant(answer)
    problems = check(doc, method, answer).problems
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(method + ": $") for p in problems)
