"""Cloud Scheduler on localcloud: the API through the official client, and real firing."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2
from lc import PARENT, PROJECT, advance, call, client_kwargs, unique

SA = f"scheduler@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def sc():
    return scheduler_v1.CloudSchedulerClient(**client_kwargs())


class Target:
    """A local HTTP endpoint that records what Scheduler sends and answers a scripted status."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                time.sleep(outer.delay)
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def target():
    server = Target()
    yield server
    server.server.shutdown()
    server.server.server_close()


def job_body(name: str, uri: str, **overrides) -> dict:
    body = {
        "name": f"{PARENT}/jobs/{name}",
        "schedule": "0 9 * * 1-5",
        "time_zone": "Asia/Seoul",
        "http_target": {
            "uri": uri,
            "http_method": scheduler_v1.HttpMethod.POST,
            "body": b'{"dry_run": false}',
            "headers": {"Content-Type": "application/json"},
            "oidc_token": {"service_account_email": SA, "audience": "http://aud"},
        },
    }
    body.update(overrides)
    return body


def test_create_echoes_google_defaults(sc):
    job = sc.create_job(parent=PARENT, job=job_body(unique("fx"), "http://127.0.0.1:9/run"))
    assert job.state == scheduler_v1.Job.State.ENABLED
    assert job.attempt_deadline.total_seconds() == 180
    retry = job.retry_config
    assert (retry.retry_count, retry.max_doublings) == (0, 5)
    assert retry.min_backoff_duration.total_seconds() == 5
    assert retry.max_backoff_duration.total_seconds() == 3600
    assert job.http_target.headers["User-Agent"] == "Google-Cloud-Scheduler"
    assert job.schedule_time.hour == 0 and job.schedule_time.weekday() < 5  # 09:00 KST = 00:00 UTC
    _, raw = call(f"/v1/{job.name}")
    assert raw["retryConfig"]["maxRetryDuration"] == "0s" and raw["attemptDeadline"] == "180s"
    assert raw["httpTarget"]["httpMethod"] == "POST" and raw["state"] == "ENABLED"


def test_update_pause_resume_delete(sc):
    job = sc.create_job(parent=PARENT, job=job_body(unique("fx"), "http://127.0.0.1:9/run"))
    job = sc.pause_job(name=job.name)
    assert job.state == scheduler_v1.Job.State.PAUSED
    with pytest.raises(exceptions.BadRequest) as info:
        sc.pause_job(name=job.name)
    assert "PAUSED" in info.value.message
    job.schedule = "*/30 * * * *"
    updated = sc.update_job(job=job, update_mask=field_mask_pb2.FieldMask(paths=["schedule"]))
    assert updated.schedule == "*/30 * * * *"
    assert updated.state == scheduler_v1.Job.State.PAUSED, "an update keeps a paused job paused"
    assert sc.resume_job(name=job.name).state == scheduler_v1.Job.State.ENABLED
    with pytest.raises(exceptions.BadRequest):
        sc.resume_job(name=job.name)
    assert job.name in [j.name for j in sc.list_jobs(parent=PARENT)]
    sc.delete_job(name=job.name)
    with pytest.raises(exceptions.NotFound):
        sc.get_job(name=job.name)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schedule": "0 9 * *"}, "Schedule or time zone is invalid."),
        ({"time_zone": "KST"}, "Schedule or time zone is invalid."),
        ({"attempt_deadline": {"seconds": 10}}, "attempt_deadline"),
        ({"retry_config": {"retry_count": 6}}, "retry_count"),
    ],
)
def test_validation_matches_google(sc, overrides, message):
    with pytest.raises(exceptions.BadRequest) as info:
        sc.create_job(
            parent=PARENT, job=job_body(unique("bad"), "http://127.0.0.1:9/", **overrides)
        )
    assert message in info.value.message


def test_body_only_with_post_put_patch_and_duplicates(sc):
    body = job_body(unique("get"), "http://127.0.0.1:9/")
    body["http_target"]["http_method"] = scheduler_v1.HttpMethod.GET
    with pytest.raises(exceptions.BadRequest):
        sc.create_job(parent=PARENT, job=body)
    name = unique("dup")
    sc.create_job(parent=PARENT, job=job_body(name, "http://127.0.0.1:9/"))
    with pytest.raises(exceptions.Conflict) as info:
        sc.create_job(parent=PARENT, job=job_body(name, "http://127.0.0.1:9/"))
    assert info.value.message.endswith(f"Job {PARENT}/jobs/{name} already exists.")


def test_unknown_field_names_its_path():
    status, body = call(
        f"/v1/{PARENT}/jobs",
        {"schedule": "* * * * *", "httpTarget": {"uri": "http://127.0.0.1:9/", "colour": 1}},
    )
    assert status == 400
    assert body["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'job.http_target': "
        "Cannot find field."
    )


def _claims(authorization: str) -> dict:
    payload = authorization.split()[1].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=="))


def test_a_week_of_weekday_runs_in_seoul(sc, target):
    """A week of clock:advance fires each weekday run once (how fast: benchmarks/soak.py; the
    session's localcloud also fires every other test's jobs, so a time bound here is noise)."""
    name = unique("weekday")
    sc.create_job(parent=PARENT, job=job_body(name, target.url + "/run-fx-rates"))
    advance(7 * 24 * 3600)
    mine = [r for r in target.requests if r["headers"].get("X-CloudScheduler-JobName") == name]
    assert len(mine) == 5
    times = [r["headers"]["X-CloudScheduler-ScheduleTime"] for r in mine]
    assert all(t.endswith("T09:00:00+09:00") for t in times), times
    days = {date.fromisoformat(t[:10]).weekday() for t in times}
    assert days == {0, 1, 2, 3, 4}
    request = mine[0]
    assert request["method"] == "POST" and request["body"] == b'{"dry_run": false}'
    assert request["headers"]["User-Agent"] == "Google-Cloud-Scheduler"
    assert request["headers"]["X-CloudScheduler"] == "true"
    assert request["headers"]["Content-Type"] == "application/json"
    claims = _claims(request["headers"]["Authorization"])
    assert claims["aud"] == "http://aud" and claims["email"] == SA
    job = sc.get_job(name=f"{PARENT}/jobs/{name}")
    assert job.status.code == 0 and job.last_attempt_time


def test_paused_jobs_do_not_fire_and_run_forces(sc, target):
    name = unique("paused")
    sc.create_job(parent=PARENT, job=job_body(name, target.url + "/x", schedule="* * * * *"))
    sc.pause_job(name=f"{PARENT}/jobs/{name}")
    advance(300)
    assert not [r for r in target.requests if r["headers"].get("X-CloudScheduler-JobName") == name]
    sc.run_job(name=f"{PARENT}/jobs/{name}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not target.requests:
        time.sleep(0.05)
    assert [r for r in target.requests if r["headers"].get("X-CloudScheduler-JobName") == name]


def test_failed_attempts_retry_with_backoff_and_log(sc, target):
    name = unique("retry")
    target.statuses = [500, 503, 500]
    body = job_body(
        name,
        target.url + "/x",
        schedule="0 0 1 * *",
        retry_config={"retry_count": 2, "min_backoff_duration": {"seconds": 10}},
    )
    sc.create_job(parent=PARENT, job=body)
    sc.run_job(name=f"{PARENT}/jobs/{name}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(target.requests) < 1:
        time.sleep(0.05)
    advance(60)  # backoff 10s, then 20s
    assert len(target.requests) == 3
    job = sc.get_job(name=f"{PARENT}/jobs/{name}")
    assert job.status.code == 13  # INTERNAL, from the last 500
    _, listed = call(
        "/v2/entries:list",
        {
            "resourceNames": [f"projects/{PROJECT}"],
            "pageSize": 100,
            "filter": f'resource.type="cloud_scheduler_job" AND resource.labels.job_id="{name}"',
        },
    )
    kinds = [
        (
            e["jsonPayload"]["@type"].rsplit(".", 1)[-1],
            e["severity"],
            e["jsonPayload"].get("status"),
        )
        for e in listed["entries"]
    ]
    assert kinds == [
        ("AttemptStarted", "INFO", None),
        ("AttemptFinished", "ERROR", "INTERNAL"),
        ("AttemptStarted", "INFO", None),
        ("AttemptFinished", "ERROR", "UNAVAILABLE"),
        ("AttemptStarted", "INFO", None),
        ("AttemptFinished", "ERROR", "INTERNAL"),
    ]


def test_attempt_deadline_gives_deadline_exceeded(sc, target):
    name = unique("slow")
    target.delay = 16.0
    body = job_body(name, target.url + "/x", schedule="0 0 1 * *", attempt_deadline={"seconds": 15})
    sc.create_job(parent=PARENT, job=body)
    sc.run_job(name=f"{PARENT}/jobs/{name}")
    deadline = time.monotonic() + 25
    job = sc.get_job(name=f"{PARENT}/jobs/{name}")
    while time.monotonic() < deadline and not job.last_attempt_time:
        time.sleep(0.2)
        job = sc.get_job(name=f"{PARENT}/jobs/{name}")
    assert job.status.code == 4  # DEADLINE_EXCEEDED


def test_lowercase_utc_zone_fires_like_utc(sc, target):
    name = unique("utc")
    job = sc.create_job(
        parent=PARENT, job=job_body(name, target.url + "/x", time_zone="utc", schedule="0 0 1 1 *")
    )
    assert job.time_zone == "utc" and job.schedule_time.month == 1 and job.schedule_time.hour == 0
    sc.run_job(name=job.name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not sc.get_job(name=job.name).last_attempt_time:
        time.sleep(0.05)
    sent = [r for r in target.requests if r["headers"].get("X-CloudScheduler-JobName") == name]
    assert sent and sent[0]["headers"]["X-CloudScheduler-ScheduleTime"].endswith("Z")
