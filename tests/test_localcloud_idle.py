"""Instances no one uses are stopped (issue 18): a revision without traffic keeps none.

A real localcloud and real instances (gunicorn processes): after ten redeploys of one service
only the serving revision runs, and the old revisions' processes are gone; a request in flight on
the old revision when a redeploy moves the traffic gets its answer, then that instance stops; the
request timeout bounds how long it may take; min instances keep (and at restart start) only
revisions that serve traffic. Checked through `GET /_localcloud/instances` and /proc.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lc
import pytest
from google.cloud import run_v2
from lc import call, client_kwargs, image_name, token, unique
from test_localcloud_run import SA, deploy, fetch, grant, service_folder

from opslib.localcloud import control

# A route that answers once a file exists (or after `most` seconds): a request held in flight.
HELD_ROUTE = """

@app.route("/held")
def held():
    import time

    from flask import request

    gate, until = request.args["gate"], time.monotonic() + float(request.args.get("most", "60"))
    print("held request started", flush=True)
    while not os.path.exists(gate) and time.monotonic() < until:
        time.sleep(0.05)
    return jsonify({"revision": os.environ.get("K_REVISION")})
"""


def held_image(tmp: Path, tag: str) -> str:
    """The service image with the /held route, built on the current localcloud."""
    folder = service_folder(tmp)
    endpoint = folder / "batch_endpoint.py"
    endpoint.write_text(endpoint.read_text() + HELD_ROUTE)
    name = image_name("idle", tag)
    result = lc.build(folder, name)
    assert result.status == result.Status.SUCCESS
    return name


@pytest.fixture(scope="module")
def run() -> run_v2.ServicesClient:
    return run_v2.ServicesClient(**client_kwargs())


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    return held_image(tmp_path_factory.mktemp("idle"), "v1")


def short(revision: str) -> str:
    return revision.rsplit("/", 1)[-1]


def instances(service: str) -> tuple[list[str], list[str], dict[str, int]]:
    """The service's revisions (short names) with a running instance, those being stopped, and
    their instances' pids."""
    body = call("/_localcloud/instances")[1]

    def mine(key: str) -> list[dict]:
        found = [i for i in body.get(key, []) if i["revision"].startswith(service + "/revisions/")]
        return [{**i, "revision": short(i["revision"])} for i in found]

    running, ending = mine("instances"), mine("stopping")
    pids = {i["revision"]: i["pid"] for i in running + ending}
    return sorted(i["revision"] for i in running), sorted(i["revision"] for i in ending), pids


def processes_of(revision: str) -> list[int]:
    """Live processes of a revision's instances (gunicorn's master and workers): those whose
    environment has its K_REVISION. An exited, unreaped process has no environment left."""
    marker = f"K_REVISION={revision}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def redeploy(run: run_v2.ServicesClient, name: str, n: int, **changes: Any) -> run_v2.Service:
    """A template change (an env var) makes a new revision; it takes all the traffic unless
    `traffic` says otherwise."""
    service = run.get_service(name=name)
    service.template.containers[0].env = [run_v2.EnvVar(name="DEPLOY", value=str(n))]
    for field, value in changes.items():
        setattr(service, field, value)
    return run.update_service(service=service).result(timeout=120)


def held_request(
    url: str, bearer: str, gate: Path, most: float = 60
) -> tuple[threading.Thread, dict]:
    answer: dict[str, Any] = {}

    def send() -> None:
        answer["status"], answer["body"] = fetch(f"{url}/held?gate={gate}&most={most}", bearer)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, answer


def started(revision: str) -> bool:
    query = f'resource.labels.revision_name="{revision}" AND textPayload:"held request"'
    return bool(lc.entries(query))


def test_ten_redeploys_leave_only_the_serving_revisions_instance(run, image):
    service = deploy(run, unique("redeploy"), image)
    grant(run, service, f"serviceAccount:{SA}")
    bearer = token(service.uri, SA)
    revisions = [short(service.latest_ready_revision)]
    before, _, pids = instances(service.name)
    assert before == revisions
    seen = dict(pids)
    for n in range(1, 11):
        assert fetch(service.uri + "/", bearer)[0] == 200  # each revision served a request
        service = redeploy(run, service.name, n)
        revisions.append(short(service.latest_ready_revision))
        running, _, pids = instances(service.name)
        seen.update(pids)
        # The old revision, idle, is out of service as soon as the deploy is done.
        assert running == [revisions[-1]], n
    assert len(set(revisions)) == 11 and len(seen) == 11

    def settled() -> bool:
        return not instances(service.name)[1] and not any(map(processes_of, revisions[:-1]))

    assert wait_until(settled, 30), "the ten old revisions' processes exited"
    running, stopping, _ = instances(service.name)
    assert (running, stopping) == ([revisions[-1]], [])
    assert [alive(seen[r]) for r in revisions] == [False] * 10 + [True]
    assert processes_of(revisions[-1]), "the serving revision still runs"
    status, body = fetch(service.uri + "/", bearer)
    assert status == 200 and json.loads(body)["revision"] == revisions[-1]
    print(f"instances of the service: {len(before)} before, {len(running)} after ten redeploys")


def test_a_request_in_flight_on_the_old_revision_gets_its_answer(run, image, tmp_path):
    service = deploy(run, unique("drain"), image, timeout={"seconds": 120})
    grant(run, service, f"serviceAccount:{SA}")
    old = short(service.latest_ready_revision)
    gate = tmp_path / "open"
    thread, answer = held_request(service.uri, token(service.uri, SA), gate)
    assert wait_until(lambda: started(old), 30), "the request reached the old revision"

    new = short(redeploy(run, service.name, 1).latest_ready_revision)
    assert new != old and thread.is_alive(), "the deploy is done while the request waits"
    running, _, pids = instances(service.name)
    assert running == sorted([old, new]), "the busy old instance is kept for its request"
    gate.touch()
    thread.join(60)
    assert answer["status"] == 200 and json.loads(answer["body"])["revision"] == old
    # Out of service when its last request ended, before the answer reached the caller.
    assert instances(service.name)[0] == [new]
    assert wait_until(lambda: not alive(pids[old]) and not processes_of(old), 15)
    assert processes_of(new)


def test_the_request_timeout_bounds_how_long_an_old_revision_runs(run, image, tmp_path):
    """A request that never ends on its own: the 504 at the revision's timeout ends it."""
    service = deploy(run, unique("bound"), image, timeout={"seconds": 8})
    grant(run, service, f"serviceAccount:{SA}")
    old = short(service.latest_ready_revision)
    clock = time.monotonic()
    thread, answer = held_request(service.uri, token(service.uri, SA), tmp_path / "never", 300)
    assert wait_until(lambda: started(old), 30)
    pid = instances(service.name)[2][old]
    new = short(redeploy(run, service.name, 1).latest_ready_revision)
    thread.join(60)
    assert answer["status"] == 504 and 7 < time.monotonic() - clock < 20
    assert instances(service.name)[0] == [new]
    # SIGTERM; the worker still runs the request, so gunicorn's graceful stop or SIGKILL ends it.
    assert wait_until(lambda: not alive(pid) and not processes_of(old), 20)


@pytest.fixture
def own_localcloud(tmp_path, monkeypatch):
    """A private localcloud (the test restarts it), with lc's helpers pointed at it."""
    state = tmp_path / "state"
    monkeypatch.setitem(lc._SERVER, "running", control.start(state, port=0))
    yield state
    control.stop(state)


def test_min_instances_keep_and_restart_only_revisions_with_traffic(own_localcloud, tmp_path):
    image = held_image(tmp_path, "min")
    run = run_v2.ServicesClient(**client_kwargs())
    first = deploy(run, "warm", image, scaling={"min_instance_count": 1})
    r1 = short(first.latest_ready_revision)
    r2 = short(redeploy(run, first.name, 1).latest_ready_revision)
    # Min instances apply only to a revision with traffic: r1 has none now.
    assert instances(first.name)[0] == [r2]
    assert wait_until(lambda: not processes_of(r1), 20)
    split = [
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=r1,
            percent=50,
        ),
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
            percent=50,
        ),
    ]
    r3 = short(redeploy(run, first.name, 2, traffic=split).latest_ready_revision)
    # r1 has traffic again, so its min instance starts; r2 lost its traffic and stops.
    assert wait_until(lambda: instances(first.name)[0] == sorted([r1, r3]), 60)
    assert wait_until(lambda: not processes_of(r2), 20)

    assert control.stop(own_localcloud)
    assert not any(map(processes_of, (r1, r2, r3))), "stop leaves no instance"
    lc._SERVER["running"] = control.start(own_localcloud, port=0)
    # At start: an instance for each revision with traffic and min instances, none for r2.
    assert instances(first.name)[0] == sorted([r1, r3])
    assert processes_of(r1) and processes_of(r3) and not processes_of(r2)
