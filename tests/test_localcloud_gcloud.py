"""The real gcloud CLI, offline, against localcloud: the seed document's commands, as written.

gcloud reaches localcloud through CLOUDSDK_API_ENDPOINT_OVERRIDES_* (opslib.localcloud.control
.environment) with credentials disabled. Each gcloud call costs a second or two, so every call
here carries assertions that would catch a wrong request or response shape.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lc import PARENT, PROJECT, REGION, call, server, unique

from opslib.localcloud import control

GCLOUD = shutil.which("gcloud")
if GCLOUD is None:
    pytest.skip("gcloud is not installed (the gcloud CLI tests need it)", allow_module_level=True)

SA = f"scheduler-invoker@{PROJECT}.iam.gserviceaccount.com"
AUDIENCE = "https://batch-service-abc123-du.a.run.app"
EXECUTIONS = f"projects/{PROJECT}/logs/cloudscheduler.googleapis.com%2Fexecutions"


@pytest.fixture(scope="module")
def gcloud_env(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env.update(control.environment(server().url))
    env.update(
        {
            "CLOUDSDK_CONFIG": str(tmp_path_factory.mktemp("gcloud-config")),
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": PROJECT,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        }
    )
    for api in ("CLOUDSCHEDULER", "LOGGING", "SECRETMANAGER"):
        assert env[f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"] == server().url + "/"
    return env


@pytest.fixture
def gcloud(gcloud_env):
    """Run gcloud; returns (exit code, stdout bytes, stderr text)."""

    def run(*args: str, stdin: bytes | None = None) -> tuple[int, bytes, str]:
        done = subprocess.run(
            [GCLOUD, *args],
            env=gcloud_env,
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")

    return run


def ok(result: tuple[int, bytes, str]) -> bytes:
    code, out, err = result
    assert code == 0, err
    return out


def failed(result: tuple[int, bytes, str]) -> str:
    code, out, err = result
    assert code != 0, out
    return err


@pytest.fixture
def recorder():
    """A tiny HTTP target on 127.0.0.1 that records every request and answers 200."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length),
                }
            )
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = do_GET = do_PUT = _record

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def jobs():
    """Job ids to delete at teardown, so no job of this module fires when others advance time."""
    names: list[str] = []
    yield names
    for name in names:
        call(f"/v1/{PARENT}/jobs/{name}", method="DELETE")


def wait_for(what, deadline: float = 15.0):
    end = time.monotonic() + deadline
    while True:
        value = what()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def seed_create(name: str, uri: str, schedule: str = "0 9 * * 1-5") -> list[str]:
    return [
        "scheduler",
        "jobs",
        "create",
        "http",
        name,
        f"--location={REGION}",
        f"--schedule={schedule}",
        "--time-zone=Asia/Seoul",
        f"--uri={uri}",
        "--http-method=POST",
        "--headers=Content-Type=application/json",
        "--message-body={}",
        f"--oidc-service-account-email={SA}",
        f"--oidc-token-audience={AUDIENCE}",
        "--attempt-deadline=900s",
    ]


def test_scheduler_seed_job_lifecycle(gcloud, recorder, jobs):
    url, seen = recorder
    name = unique("nightly-sync")
    jobs.append(name)
    full = f"{PARENT}/jobs/{name}"
    loc = f"--location={REGION}"
    ok(gcloud(*seed_create(name, f"{url}/jobs/nightly-sync")))

    described = json.loads(ok(gcloud("scheduler", "jobs", "describe", name, loc, "--format=json")))
    assert described["name"] == full
    assert described["state"] == "ENABLED"
    assert described["schedule"] == "0 9 * * 1-5"
    assert described["timeZone"] == "Asia/Seoul"
    assert described["attemptDeadline"] == "900s"
    assert described["retryConfig"] == {
        "retryCount": 0,
        "maxRetryDuration": "0s",
        "minBackoffDuration": "5s",
        "maxBackoffDuration": "3600s",
        "maxDoublings": 5,
    }
    assert described["httpTarget"] == {
        "uri": f"{url}/jobs/nightly-sync",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"},
        "body": base64.b64encode(b"{}").decode(),
        "oidcToken": {"serviceAccountEmail": SA, "audience": AUDIENCE},
    }
    # Next run: a weekday at 09:00 in Seoul (00:00 UTC).
    next_run = datetime.fromisoformat(described["scheduleTime"].replace("Z", "+00:00"))
    assert (next_run.hour, next_run.minute, next_run.second) == (0, 0, 0)
    assert next_run.weekday() in range(5)

    ok(gcloud("scheduler", "jobs", "run", name, loc))
    assert wait_for(lambda: seen), "Scheduler never called the target"
    [hit] = seen
    server_now = datetime.fromisoformat(call("/_localcloud/clock")[1]["now"].replace("Z", "+00:00"))
    headers = {k.lower(): v for k, v in hit["headers"].items()}
    assert (hit["method"], hit["path"], hit["body"]) == ("POST", "/jobs/nightly-sync", b"{}")
    assert headers["user-agent"] == "Google-Cloud-Scheduler"
    assert headers["x-cloudscheduler"] == "true"
    assert headers["x-cloudscheduler-jobname"] == name
    assert headers["content-type"] == "application/json"
    scheduled = headers["x-cloudscheduler-scheduletime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", scheduled), scheduled
    assert abs((datetime.fromisoformat(scheduled) - server_now).total_seconds()) < 60
    scheme, token = headers["authorization"].split(" ", 1)
    claims = jwt_claims(token)
    assert scheme == "Bearer"
    assert (claims["aud"], claims["email"], claims["iss"]) == (
        AUDIENCE,
        SA,
        "https://accounts.google.com",
    )

    def attempts() -> list[dict]:
        status, body = call(
            "/v2/entries:list",
            {
                "resourceNames": [f"projects/{PROJECT}"],
                "filter": 'resource.type="cloud_scheduler_job" AND '
                f'resource.labels.job_id="{name}"',
            },
        )
        assert status == 200, body
        entries = body.get("entries", [])
        return entries if len(entries) >= 2 else []

    started, finished = wait_for(attempts)
    for entry in (started, finished):
        assert entry["logName"] == EXECUTIONS
        assert entry["resource"] == {
            "type": "cloud_scheduler_job",
            "labels": {"project_id": PROJECT, "location": REGION, "job_id": name},
        }
        assert entry["severity"] == "INFO"
    prefix = "type.googleapis.com/google.cloud.scheduler.logging."
    assert started["jsonPayload"] == {
        "@type": prefix + "AttemptStarted",
        "jobName": full,
        "targetType": "HTTP",
        "url": f"{url}/jobs/nightly-sync",
    }
    assert finished["jsonPayload"]["@type"] == prefix + "AttemptFinished"
    assert finished["httpRequest"] == {"status": 200}

    ok(gcloud("scheduler", "jobs", "pause", name, loc))
    err = failed(gcloud("scheduler", "jobs", "pause", name, loc))
    assert "(gcloud.scheduler.jobs.pause) FAILED_PRECONDITION:" in err
    ok(gcloud("scheduler", "jobs", "resume", name, loc))

    listed = json.loads(ok(gcloud("scheduler", "jobs", "list", loc, "--format=json")))
    mine = [job for job in listed if job["name"] == full]
    assert [(job["state"], job["schedule"]) for job in mine] == [("ENABLED", "0 9 * * 1-5")]
    assert all(job["name"].startswith(f"{PARENT}/jobs/") for job in listed)

    ok(gcloud("scheduler", "jobs", "delete", name, loc))
    err = failed(gcloud("scheduler", "jobs", "describe", name, loc))
    assert "NOT_FOUND" in err and full in err
    assert len(seen) == 1


def test_scheduler_create_errors(gcloud, jobs):
    name = unique("dup")
    jobs.append(name)
    status, body = call(
        f"/v1/{PARENT}/jobs",
        {
            "name": f"{PARENT}/jobs/{name}",
            "schedule": "0 9 * * 1-5",
            "timeZone": "Asia/Seoul",
            "httpTarget": {"uri": "http://127.0.0.1:9/unused"},
        },
    )
    assert status == 200, body

    err = failed(gcloud(*seed_create(name, "http://127.0.0.1:9/unused")))
    assert (
        f"ERROR: (gcloud.scheduler.jobs.create.http) ALREADY_EXISTS: Job {PARENT}/jobs/{name} "
        "already exists." in err
    )

    bad = unique("bad-schedule")
    jobs.append(bad)
    err = failed(gcloud(*seed_create(bad, "http://127.0.0.1:9/unused", schedule="0 25 * * *")))
    assert (
        "ERROR: (gcloud.scheduler.jobs.create.http) INVALID_ARGUMENT: "
        "Schedule or time zone is invalid." in err
    )
    assert call(f"/v1/{PARENT}/jobs/{bad}")[0] == 404


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def run_logs():
    """Realistic Cloud Run entries for one service, plus another service's error."""
    service, other = unique("batch-service"), unique("other-service")
    now = datetime.now(UTC)

    def resource(svc: str) -> dict:
        return {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": PROJECT,
                "service_name": svc,
                "revision_name": f"{svc}-00003-xyz",
                "location": REGION,
                "configuration_name": svc,
            },
        }

    def log(name: str) -> str:
        return f"projects/{PROJECT}/logs/run.googleapis.com%2F{name}"

    entries = {
        "old_error": {
            "logName": log("stdout"),
            "resource": resource(service),
            "timestamp": stamp(now - timedelta(minutes=30)),
            "severity": "ERROR",
            "insertId": unique("old"),
            "jsonPayload": {"message": "job fx-rates failed: upstream 503", "job": "fx-rates"},
            "labels": {"instanceId": "00f46b9285a1"},
        },
        "text": {
            "logName": log("stdout"),
            "resource": resource(service),
            "timestamp": stamp(now - timedelta(minutes=3)),
            "severity": "DEFAULT",
            "insertId": unique("text"),
            "textPayload": "Listening at: http://0.0.0.0:8080 (1)",
            "labels": {"instanceId": "00f46b9285a1"},
        },
        "warning": {
            "logName": log("stdout"),
            "resource": resource(service),
            "timestamp": stamp(now - timedelta(minutes=2)),
            "severity": "WARNING",
            "insertId": unique("warn"),
            "jsonPayload": {"message": "slow upstream", "job": "nightly-sync", "ms": 2500},
            "labels": {"instanceId": "00f46b9285a1"},
        },
        "error": {
            "logName": log("stdout"),
            "resource": resource(service),
            "timestamp": stamp(now - timedelta(minutes=1)),
            "severity": "ERROR",
            "insertId": unique("err"),
            "jsonPayload": {
                "message": "job nightly-sync failed: KeyError 'rate'",
                "job": "nightly-sync",
                "attempt": 2,
            },
            "labels": {"instanceId": "00f46b9285a1"},
            "trace": f"projects/{PROJECT}/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        },
        "other_service": {
            "logName": log("stdout"),
            "resource": resource(other),
            "timestamp": stamp(now - timedelta(seconds=30)),
            "severity": "ERROR",
            "insertId": unique("other"),
            "textPayload": "Traceback (most recent call last):",
        },
    }
    status, body = call("/v2/entries:write", {"entries": list(entries.values())})
    assert (status, body) == (200, {})
    return service, entries


def without_receive(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "receiveTimestamp"}


def test_logging_read_seed_filter_table(gcloud, run_logs):
    service, entries = run_logs
    out = ok(
        gcloud(
            "logging",
            "read",
            f"resource.type=cloud_run_revision AND resource.labels.service_name={service}",
            "--limit=30",
            "--freshness=10m",
            "--format=table(timestamp,textPayload)",
        )
    ).decode()
    assert [line.split() for line in out.splitlines()] == [
        ["TIMESTAMP", "TEXT_PAYLOAD"],
        [entries["error"]["timestamp"]],
        [entries["warning"]["timestamp"]],
        [entries["text"]["timestamp"], *entries["text"]["textPayload"].split()],
    ]


def test_logging_read_seed_filter_json(gcloud, run_logs):
    service, entries = run_logs
    out = ok(
        gcloud(
            "logging",
            "read",
            f"resource.type=cloud_run_revision AND resource.labels.service_name={service}",
            "--limit=30",
            "--freshness=10m",
            "--format=json",
        )
    )
    got = json.loads(out)
    assert [without_receive(e) for e in got] == [
        entries["error"],
        entries["warning"],
        entries["text"],
    ]
    assert all(e["receiveTimestamp"].endswith("Z") for e in got)


def test_logging_read_seed_error_filter(gcloud, run_logs):
    service, entries = run_logs
    out = ok(
        gcloud(
            "logging",
            "read",
            "resource.type=cloud_run_revision AND severity>=ERROR AND "
            f"resource.labels.service_name={service}",
            "--limit=20",
            "--freshness=1h",
            "--format=json",
        )
    )
    got = json.loads(out)
    assert [e["insertId"] for e in got] == [
        entries["error"]["insertId"],
        entries["old_error"]["insertId"],
    ]
    assert without_receive(got[0]) == entries["error"]
    assert got[0]["jsonPayload"]["attempt"] == 2


def test_secrets_from_stdin_versions_and_access(gcloud):
    name = unique("api-key")
    first, second = b"s3cr3t", "pässwörd\nzweite Zeile".encode()
    ok(gcloud("secrets", "create", name, "--data-file=-", stdin=first))
    ok(gcloud("secrets", "versions", "add", name, "--data-file=-", stdin=second))

    assert ok(gcloud("secrets", "versions", "access", "latest", f"--secret={name}")) == second
    assert ok(gcloud("secrets", "versions", "access", "1", f"--secret={name}")) == first

    versions = json.loads(ok(gcloud("secrets", "versions", "list", name, "--format=json")))
    assert [(v["name"].split("/", 2)[2], v["state"]) for v in versions] == [
        (f"secrets/{name}/versions/2", "ENABLED"),
        (f"secrets/{name}/versions/1", "ENABLED"),
    ]
    assert all(v["clientSpecifiedPayloadChecksum"] is True for v in versions)
    number = versions[0]["name"].split("/")[1]
    assert number.isdigit() and number != PROJECT

    status, secret = call(f"/v1/projects/{PROJECT}/secrets/{name}")
    assert status == 200 and secret["replication"] == {"automatic": {}}
