"""The overlap guard (service/scripts/common/lease.py) against localcloud's GCS, through HTTP.

No mocks: the lease goes over the GCS JSON API with a metadata-server token, as on Cloud Run.
Unit tests and the two-gunicorn test use a localcloud of their own, whose clock is not advanced
(the session's is, by other tests), so one-second expiries are judged to the millisecond.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lc
import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2, storage

from opslib.localcloud import control
from opslib.steps.endpoint import serve as localserve
from scripts.common import lease
from scripts.common.logs import JobRun, JsonFormatter, job_run

JOB = "lease-demo"
DEMO_JOB = '''"""lease-demo: two seconds of work, each real run marked in a file the test counts."""

import logging
import os
import time

_log = logging.getLogger(__name__)


def lease_demo(dry_run=False):
    marks = os.environ.get("LEASE_DEMO_MARKS")
    if marks:
        with open(marks, "a") as handle:
            handle.write(f"{os.environ.get('K_REVISION')}\\n")
    time.sleep(float(os.environ.get("LEASE_DEMO_SECONDS", "2")))
    _log.info("lease-demo worked")
    return {"processed": 1, "errors": 0, "dry_run": dry_run}
'''


def guarded_route(job: str, module: str, deadline: int, mode: str = "skip") -> str:
    """The route step 2 should render for `overlap: skip|queue` (the seed's route + 3 lines)."""
    view = f"run_{module}"
    return f'''

@app.route("/run-{job}", methods=["POST"])
def {view}():
    with job_run("{job}", logger) as run, lease.guard(run, {deadline}, "{mode}") as held:
        if held.skipped:
            return jsonify(held.response(make_response))
        try:
            logger.info("=== {job} started ===")
            from scripts.batch.{module} import {module} as job_function

            data = request.get_json(silent=True) or {{}}
            result = job_function(dry_run=bool(data.get("dry_run", False)))

            run.succeeded(result)
            return jsonify(make_response("success", result=result))
        except Exception as e:
            run.failed(e)
            return jsonify(make_response("error", error=e)), 500
'''


def guarded_service(folder: Path, deadline: int = 30) -> Path:
    """A service folder whose batch_endpoint serves the lease-demo job behind the guard."""
    (folder / "scripts" / "batch" / "lease_demo.py").write_text(DEMO_JOB)
    endpoint = folder / "batch_endpoint.py"
    source = endpoint.read_text()
    source = source.replace(
        "from scripts.common import logs, routing\n",
        "from flask import request\n\n"
        "from scripts.common import lease, logs, routing\n"
        "from scripts.common.logs import job_run\n",
    )
    main = '\n\nif __name__ == "__main__":'
    source = source.replace(main, guarded_route(JOB, "lease_demo", deadline) + main)
    endpoint.write_text(source)
    compile(source, str(endpoint), "exec")
    return folder


@pytest.fixture(scope="module")
def cloud() -> Iterator[control.Running]:
    """A localcloud of this module's own, with its clock at real time."""
    state = Path(tempfile.mkdtemp(prefix="localcloud-lease-"))
    running = control.start(state, port=0)
    try:
        yield running
    finally:
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)


def gcs(url: str) -> storage.Client:
    """The official client on a localcloud."""
    return storage.Client(
        project=lc.PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )


@pytest.fixture(scope="module")
def bucket(cloud) -> str:
    return gcs(cloud.url).create_bucket(lc.unique("leases")).name


@pytest.fixture
def env(cloud, bucket, monkeypatch) -> dict[str, str]:
    """What an instance gets from localcloud (endpoints, metadata server) plus the bucket."""
    values = {
        "STORAGE_EMULATOR_HOST": cloud.url,
        "GCE_METADATA_HOST": f"127.0.0.1:{cloud.port}",
        lease.BUCKET_ENV: bucket,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def blob_exists(url: str, bucket: str, job: str) -> bool:
    return gcs(url).bucket(bucket).blob(lease.object_name(job)).exists()


class Lines(logging.Handler):
    """The JSON lines the service would print, kept for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.entries: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("lease-test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def test_acquire_skip_release(env):
    job = lc.unique("job")
    first = lease.acquire(job, "run-1", 30)
    assert first.acquired and first.lease.run_id == "run-1" and first.replaced is None
    assert first.lease.generation.isdigit()
    second = lease.acquire(job, "run-2", 30)
    assert not second.acquired and second.lease.run_id == "run-1"
    assert second.lease.generation == first.lease.generation
    assert lease.release(first.lease) is True
    assert lease.read(job)[0] is None
    third = lease.acquire(job, "run-3", 30)
    assert third.acquired and int(third.lease.generation) > int(first.lease.generation)
    assert lease.release(third.lease)


def test_lease_object_holds_run_id_holder_and_expiry(env, cloud, bucket):
    job = lc.unique("job")
    held = lease.acquire(job, "run-body", 900).lease
    body = json.loads(
        gcs(cloud.url).bucket(bucket).blob(lease.object_name(job)).download_as_bytes()
    )
    assert set(body) == {"job", "run_id", "holder", "acquired", "expires", "ttl_seconds"}
    assert body["run_id"] == "run-body" and body["ttl_seconds"] == 900
    assert (held.expires - held.written).total_seconds() == 900
    lease.release(held)


def test_a_retried_create_keeps_its_own_lease(env):
    """A create whose answer was lost is retried; the 412 then finds our own run id."""
    job = lc.unique("job")
    first = lease.acquire(job, "run-same", 30)
    again = lease.acquire(job, "run-same", 30)
    assert again.acquired and again.lease.generation == first.lease.generation
    lease.release(again.lease)


def test_a_crashed_holders_lease_expires_and_is_taken_over(env):
    job = lc.unique("job")
    crashed = lease.acquire(job, "crashed", 1).lease  # never released
    assert not lease.acquire(job, "too-early", 30).acquired
    time.sleep(1.1)
    taker = lease.acquire(job, "taker", 30)
    assert taker.acquired and taker.replaced is not None
    assert taker.replaced.run_id == "crashed"
    assert int(taker.lease.generation) > int(crashed.generation)
    lease.release(taker.lease)


def test_racers_taking_over_one_stale_lease_exactly_one_wins(env):
    job = lc.unique("job")
    lease.acquire(job, "stale", 0.5)
    time.sleep(0.6)
    start, outcomes = threading.Barrier(8), []

    def race(n: int) -> None:
        start.wait()
        outcomes.append(lease.acquire(job, f"racer-{n}", 30))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.acquired]
    assert len(winners) == 1
    winner = winners[0].lease
    assert winners[0].replaced is not None and winners[0].replaced.run_id == "stale"
    assert all(o.lease.run_id == winner.run_id for o in outcomes)  # the losers see the winner
    lease.release(winner)


def test_two_conditional_takeovers_of_one_generation(env, bucket):
    """The primitive itself: two writes at the stale generation, the second gets 412."""
    job = lc.unique("job")
    stale = lease.acquire(job, "stale", 30).lease
    first = lease._write(bucket, job, "a", 30, stale.generation)
    second = lease._write(bucket, job, "b", 30, stale.generation)
    assert first is not None and first.run_id == "a" and second is None
    lease.release(first)


def test_release_never_deletes_another_runs_lease(env):
    job = lc.unique("job")
    slow = lease.acquire(job, "slow", 0.5).lease
    time.sleep(0.6)
    taker = lease.acquire(job, "taker", 30)
    assert taker.acquired
    assert lease.release(slow) is False  # its generation is gone
    assert lease.read(job)[0].run_id == "taker"
    assert lease.release(taker.lease) is True
    assert lease.release(taker.lease) is False  # already gone: 404


def test_queue_waits_for_the_holder_to_release(env):
    job = lc.unique("job")
    holder = lease.acquire(job, "holder", 30).lease
    threading.Timer(0.8, lease.release, args=(holder,)).start()
    started = time.monotonic()
    queued = lease.wait(job, "queued", 30, wait_seconds=10)
    assert queued.acquired and queued.replaced is None
    assert 0.7 < queued.waited < 3 and time.monotonic() - started < 3
    lease.release(queued.lease)


def test_queue_gives_up_at_its_deadline(env):
    job = lc.unique("job")
    holder = lease.acquire(job, "holder", 30).lease
    queued = lease.wait(job, "queued", 30, wait_seconds=0.6)
    assert not queued.acquired and queued.lease.run_id == "holder" and queued.waited >= 0.6
    lease.release(holder)


def test_guard_skips_with_a_200_shape_and_one_log_line(env, lines):
    logger = logging.getLogger("lease-test")
    job = lc.unique("job")
    holder = lease.acquire(job, "holder", 30).lease
    with job_run(job, logger) as run, lease.guard(run, 30) as held:
        assert held.skipped and held.holder.run_id == "holder"
        body = held.response(
            lambda status, result=None, error=None: {
                "status": status,
                "result": result,
                "error": error,
            }
        )
    assert body["status"] == "skipped" and body["skipped"] is True and body["error"] is None
    assert body["result"]["holder_run_id"] == "holder"
    assert body["result"]["expires"].endswith("Z")
    skipped = [e for e in lines.entries if e.get("status") == "skipped"]
    assert len(skipped) == 1
    entry = skipped[0]
    assert entry["severity"] == "INFO" and entry["message"].startswith("skipped: ")
    assert entry["job"] == job and entry["run_id"] == run.run_id
    assert lease.read(job)[0].run_id == "holder"  # a skipped run leaves the lease alone
    lease.release(holder)


def test_guard_releases_even_when_the_run_fails(env):
    logger = logging.getLogger("lease-test")
    job = lc.unique("job")
    with pytest.raises(RuntimeError), job_run(job, logger) as run, lease.guard(run, 30) as held:
        assert not held.skipped and held.lease.run_id == run.run_id
        raise RuntimeError("the job failed")
    assert lease.read(job)[0] is None


def test_guard_logs_takeover_and_lost_lease(env, lines):
    logger = logging.getLogger("lease-test")
    job = lc.unique("job")
    lease.acquire(job, "crashed", 0.3)
    time.sleep(0.4)
    with job_run(job, logger) as run, lease.guard(run, 0.3) as held:
        assert not held.skipped
        time.sleep(0.4)  # overruns its lease; another run takes it over
        other = lease.acquire(job, "next-run", 30)
        assert other.acquired
    statuses = [e.get("status") for e in lines.entries]
    assert "took_over" in statuses and "lease_lost" in statuses
    assert lease.read(job)[0].run_id == "next-run"  # never deleted by the overrunning run
    lease.release(other.lease)


def test_guard_is_off_without_a_bucket(monkeypatch, caplog):
    monkeypatch.delenv(lease.BUCKET_ENV, raising=False)
    monkeypatch.setattr(lease, "_said_off", set())
    caplog.set_level(logging.INFO)
    run = JobRun("no-bucket", logging.getLogger("lease-test"))
    for _ in range(2):
        with lease.guard(run, 30) as held:
            assert not held.skipped and held.off == f"{lease.BUCKET_ENV} is not set"
    said = [r for r in caplog.records if "overlap guard off" in r.getMessage()]
    assert len(said) == 1  # one line, not one per run


def test_guard_runs_unguarded_when_storage_fails(env, monkeypatch, lines):
    monkeypatch.setenv(lease.BUCKET_ENV, "no-such-bucket-for-leases")
    logger = logging.getLogger("lease-test")
    with job_run("job", logger) as run, lease.guard(run, 30) as held:
        assert not held.skipped and held.off == "lease_error"
    assert [e["status"] for e in lines.entries] == ["lease_error"]
    assert "bucket no-such-bucket-for-leases not found" in lines.entries[0]["message"]


def test_guard_rejects_unknown_modes():
    run = JobRun("j", logging.getLogger("lease-test"))
    with pytest.raises(ValueError, match="allow, skip, queue"), lease.guard(run, 30, "wait"):
        pass


# --- localcloud's GCS preconditions, through the official client and the raw JSON API --------


@pytest.fixture
def gcs_bucket(cloud, bucket):
    return gcs(cloud.url).bucket(bucket)


def test_uploads_honour_generation_preconditions(gcs_bucket):
    name = lc.unique("obj")
    first = gcs_bucket.blob(name)
    first.upload_from_string("one", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).upload_from_string("two", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).upload_from_string("two", if_generation_not_match=first.generation)
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).upload_from_string("two", if_metageneration_match=2)
    second = gcs_bucket.blob(name)
    second.upload_from_string("two", if_generation_match=first.generation)
    assert second.generation > first.generation  # a new generation on each write
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(lc.unique("absent")).upload_from_string("x", if_generation_not_match=1)


def test_resumable_upload_checks_its_preconditions_when_it_completes(gcs_bucket):
    name = lc.unique("big")
    data = b"x" * (600 * 1024)  # three 256 KiB chunks
    gcs_bucket.blob(name, chunk_size=256 * 1024).upload_from_string(data, if_generation_match=0)
    again = gcs_bucket.blob(name, chunk_size=256 * 1024)
    with pytest.raises(exceptions.PreconditionFailed):
        again.upload_from_string(b"y" * (600 * 1024), if_generation_match=0)
    assert gcs_bucket.blob(name).download_as_bytes() == data


def test_reads_and_deletes_honour_preconditions(gcs_bucket):
    name = lc.unique("obj")
    blob = gcs_bucket.blob(name)
    blob.upload_from_string("data")
    current = gcs_bucket.get_blob(name).generation
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).reload(if_generation_match=current + 1)
    with pytest.raises(exceptions.NotModified):  # a failed *NotMatch on a read is 304
        gcs_bucket.blob(name).reload(if_generation_not_match=current)
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).download_as_bytes(if_generation_match=current + 1)
    with pytest.raises(exceptions.NotModified):
        gcs_bucket.blob(name).download_as_bytes(if_metageneration_not_match=1)
    assert gcs_bucket.blob(name).download_as_bytes(if_generation_match=current) == b"data"
    with pytest.raises(exceptions.PreconditionFailed):
        gcs_bucket.blob(name).delete(if_generation_match=current + 1)
    gcs_bucket.blob(name).delete(if_generation_match=current)
    assert not gcs_bucket.blob(name).exists()


def test_precondition_failure_is_googles_json_error(cloud, bucket):
    url = f"{cloud.url}/upload/storage/v1/b/{bucket}/o"
    params = {"uploadType": "media", "name": lc.unique("raw"), "ifGenerationMatch": "0"}
    created = requests.post(url, params=params, data=b"a", timeout=10)
    assert created.status_code == 200 and isinstance(created.json()["generation"], str)
    assert created.headers["Date"].endswith(" GMT")
    refused = requests.post(url, params=params, data=b"b", timeout=10)
    assert refused.status_code == 412
    message = "At least one of the pre-conditions you specified did not hold."
    assert refused.json() == {
        "error": {
            "code": 412,
            "message": message,
            "errors": [
                {
                    "message": message,
                    "domain": "global",
                    "reason": "conditionNotMet",
                    "locationType": "header",
                    "location": "If-Match",
                }
            ],
        }
    }
    bad = requests.post(url, params={**params, "ifGenerationMatch": "x"}, data=b"b", timeout=10)
    assert bad.status_code == 400


# --- The done-when tests: real gunicorn instances --------------------------------------------


def _post_all(urls: list[str], bearers: list[str] | None = None) -> list[tuple[int, dict, float]]:
    """POST to every URL at once (each with its bearer, if any); (status, body, seconds)."""
    start, results = threading.Barrier(len(urls)), [None] * len(urls)

    def post(i: int) -> None:
        headers = {"Authorization": f"Bearer {bearers[i]}"} if bearers else {}
        start.wait()
        began = time.perf_counter()
        answer = requests.post(urls[i], json={}, headers=headers, timeout=60)
        results[i] = (answer.status_code, answer.json(), time.perf_counter() - began)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def two_instances(tmp_path, service_dir, env) -> Iterator[tuple[list[str], list[Path], Path]]:
    """Two gunicorns of one service, as two Cloud Run instances would be: (urls, logs, marks)."""
    folder = guarded_service(service_dir)
    marks = tmp_path / "marks.txt"
    ports = [localserve.free_port(), localserve.free_port()]
    logs = [tmp_path / "inst-a.log", tmp_path / "inst-b.log"]
    processes = [
        localserve.spawn(
            folder,
            port,
            env={**env, "K_REVISION": log.stem, "LEASE_DEMO_MARKS": str(marks)},
            log_path=log,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            localserve.wait_healthy(port, process)
        yield [f"http://127.0.0.1:{port}/run-{JOB}" for port in ports], logs, marks
    finally:
        for process in processes:
            localserve.stop(process)


def test_two_instances_one_run_works_the_other_is_skipped(two_instances, cloud, bucket):
    urls, logs, marks = two_instances
    results = _post_all(urls)
    assert [status for status, _, _ in results] == [200, 200]
    worked = [r for r in results if r[1]["status"] == "success"]
    skipped = [r for r in results if r[1]["status"] == "skipped"]
    assert len(worked) == 1 and len(skipped) == 1, results
    _, body, seconds = skipped[0]
    assert body["skipped"] is True and body["error"] is None and seconds < 1.5
    assert body["result"]["holder"].startswith(("inst-a/", "inst-b/"))
    assert worked[0][2] >= 2.0 and worked[0][1]["result"]["processed"] == 1
    assert len(marks.read_text().splitlines()) == 1  # the work itself ran once
    entries = [e for log in logs for e in _json_lines(log) if e.get("job") == JOB]
    assert [e["status"] for e in entries if e.get("status")].count("success") == 1
    skip_lines = [e for e in entries if e.get("status") == "skipped"]
    assert len(skip_lines) == 1 and skip_lines[0]["message"].startswith("skipped: ")
    assert skip_lines[0]["run_id"] != body["result"]["holder_run_id"]
    assert not blob_exists(cloud.url, bucket, JOB)  # released


def test_a_crashed_holder_blocks_until_its_lease_expires(two_instances, cloud, bucket):
    urls, logs, _ = two_instances
    crashed = lease.acquire(JOB, "crashed-run", 1.0).lease  # written, never released
    status, body, _ = _post_all(urls[:1])[0]
    assert status == 200 and body["skipped"] and body["result"]["holder_run_id"] == "crashed-run"
    time.sleep(max(0.0, 1.5 - (time.time() - crashed.written.timestamp())))
    status, body, _ = _post_all(urls[1:])[0]
    assert status == 200 and body["status"] == "success", body
    took_over = [e for e in _json_lines(logs[1]) if e.get("status") == "took_over"]
    assert len(took_over) == 1 and "crashed-run" in took_over[0]["message"]
    assert not blob_exists(cloud.url, bucket, JOB)


# --- Deployed through localcloud: the instances' own environment reaches GCS -----------------


def test_deployed_instances_share_the_lease(tmp_path):
    """Two Cloud Run services of one image on localcloud (it runs one instance per revision)."""
    from test_localcloud_run import SA, deploy, entries, grant, service_folder

    client = gcs(lc.server().url)
    bucket = client.create_bucket(lc.unique("leases")).name
    folder = guarded_service(service_folder(tmp_path, "unused"))
    image = lc.image_name(lc.unique("lease"), "v1")
    assert lc.build(folder, image).status.name == "SUCCESS"
    run = run_v2.ServicesClient(**lc.client_kwargs())
    env = [
        {"name": lease.BUCKET_ENV, "value": bucket},
        {"name": "LEASE_DEMO_SECONDS", "value": "2"},
    ]
    services = []
    for _ in range(2):
        service = deploy(run, lc.unique("lease"), image, containers=[{"image": image, "env": env}])
        grant(run, service, f"serviceAccount:{SA}")
        services.append(service)
    urls = [f"{s.uri}/run-{JOB}" for s in services]
    results = _post_all(urls, [lc.token(s.uri, SA) for s in services])
    assert [status for status, _, _ in results] == [200, 200]
    assert sorted(body["status"] for _, body, _ in results) == ["skipped", "success"], results
    assert not client.bucket(bucket).blob(lease.object_name(JOB)).exists()
    names = " OR ".join(f'"{s.name.rsplit("/", 1)[-1]}"' for s in services)
    query = (
        f"resource.labels.service_name=({names}) AND jsonPayload.job={JOB}"
        ' AND jsonPayload.status=("skipped" OR "success")'
    )
    for _ in range(50):  # the instances' stdout reaches Logging as it is read
        logged = sorted(e["jsonPayload"]["status"] for e in entries(query))
        if len(logged) >= 2:
            break
        time.sleep(0.1)
    assert logged == ["skipped", "success"]  # what the doctor counts
