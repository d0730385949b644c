"""localcloud as a process: state survives a restart, stop leaves nothing running, reset empties.

Also: a busy port is named in one line, `stop --all` finds localclouds through the registry, and
the suite's own leak check (conftest) catches a process a test leaves running.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lc
import pytest
from google.api_core import exceptions
from google.cloud import run_v2, scheduler_v1, secretmanager_v1

from opslib.localcloud import control

SA = f"scheduler@{lc.PROJECT}.iam.gserviceaccount.com"


def processes_under(folder: Path) -> list[int]:
    """PIDs whose working directory or command line lies in `folder`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(folder)) or str(folder) in cmdline:
            found.append(int(pid))
    return found


@pytest.fixture
def own_localcloud(tmp_path, monkeypatch):
    """A private localcloud (this test restarts it), with lc's helpers pointed at it."""
    state = tmp_path / "state"
    running = control.start(state, port=0)
    monkeypatch.setitem(lc._SERVER, "running", running)
    yield state
    control.stop(state)


def test_restart_keeps_everything_and_min_instances_run_again(own_localcloud, tmp_path):
    from test_localcloud_run import deploy, entries, fetch, grant, service_folder

    state = own_localcloud
    sm = secretmanager_v1.SecretManagerServiceClient(**lc.client_kwargs())
    secret = sm.create_secret(
        parent=f"projects/{lc.PROJECT}",
        secret_id="api-key",
        secret={"replication": {"automatic": {}}},
    )
    sm.add_secret_version(parent=secret.name, payload={"data": b"s3cr3t"})
    image = lc.image_name("keep", "v1")
    lc.build(service_folder(tmp_path), image)
    run = run_v2.ServicesClient(**lc.client_kwargs())
    service = deploy(
        run,
        "keep",
        image,
        scaling={"min_instance_count": 1},
        containers=[
            {
                "image": image,
                "env": [
                    {
                        "name": "API_KEY",
                        "value_source": {
                            "secret_key_ref": {"secret": "api-key", "version": "latest"}
                        },
                    }
                ],
            }
        ],
    )
    grant(run, service, f"serviceAccount:{SA}")
    sc = scheduler_v1.CloudSchedulerClient(**lc.client_kwargs())
    sc.create_job(
        parent=lc.PARENT,
        job={
            "name": f"{lc.PARENT}/jobs/keep",
            "schedule": "0 9 * * *",
            "http_target": {"uri": service.uri + "/health"},
        },
    )
    logs_before = len(entries('resource.labels.service_name="keep"'))
    assert processes_under(state), "the service's instance runs"

    assert control.stop(state)
    assert processes_under(state) == [], "stop leaves no process behind"
    assert control.read(state) is None

    running = control.start(state, port=0)
    lc._SERVER["running"] = running
    sm = secretmanager_v1.SecretManagerServiceClient(**lc.client_kwargs())
    assert sm.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"s3cr3t"
    sc = scheduler_v1.CloudSchedulerClient(**lc.client_kwargs())
    assert sc.get_job(name=f"{lc.PARENT}/jobs/keep").schedule == "0 9 * * *"
    run = run_v2.ServicesClient(**lc.client_kwargs())
    again = run.get_service(name=service.name)
    assert again.latest_ready_revision == service.latest_ready_revision and again.uri == service.uri
    assert len(entries('resource.labels.service_name="keep"')) > logs_before
    started = entries('resource.labels.service_name="keep" AND textPayload:"Starting new instance"')
    assert len(started) == 2, "the min-instances revision was started again at restart"
    status, _ = fetch(service.uri + "/health", lc.token(service.uri, SA))
    assert status == 200


def test_reset_empties_every_api(own_localcloud):
    sm = secretmanager_v1.SecretManagerServiceClient(**lc.client_kwargs())
    secret = sm.create_secret(
        parent=f"projects/{lc.PROJECT}", secret_id="gone", secret={"replication": {"automatic": {}}}
    )
    assert lc.call("/_localcloud/reset", {})[0] == 200
    with pytest.raises(exceptions.NotFound):
        sm.get_secret(name=secret.name)
    sm.create_secret(
        parent=f"projects/{lc.PROJECT}", secret_id="gone", secret={"replication": {"automatic": {}}}
    )
    _, listed = lc.call("/v2/entries:list", {"resourceNames": [f"projects/{lc.PROJECT}"]})
    assert listed.get("entries", []) == []


def test_listens_on_loopback_only(own_localcloud):
    url = lc.server().url
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = [line.split()[1] for line in listening if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in local
    assert f"00000000:{port:04X}" not in local


def test_env_points_clients_at_localcloud():
    env = control.environment("http://127.0.0.1:8780")
    assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDSCHEDULER"] == "http://127.0.0.1:8780/"
    assert env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:8780"
    assert env["CLOUDSDK_AUTH_DISABLE_CREDENTIALS"] == "true"


def test_cli_start_status_env_stop(tmp_path):
    from conftest import tool

    state = str(tmp_path / "cli-state")
    opslib = tool("opslib")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [opslib, "localcloud", *args, "--state", state],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert cli("status").returncode == 1
    started = cli("start", "--detach", "--port", "0")
    assert started.returncode == 0, started.stderr
    url = started.stdout.split(" at ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    assert url in cli("status").stdout
    env = dict(
        line.removeprefix("export ").split("=", 1) for line in cli("env").stdout.splitlines()
    )
    assert env["CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER"] == f"{url}/"
    assert env["STORAGE_EMULATOR_HOST"] == url
    assert cli("stop").stdout.strip() == "localcloud stopped"
    assert processes_under(Path(state)) == []
    assert cli("status").returncode == 1


@pytest.fixture
def registry(tmp_path):
    """A registry of this test's own (the CLI's `stop --all` must not see the suite's others)."""
    path = tmp_path / "registry.json"
    yield path
    cli("stop", "--all", registry=path)  # stops whatever the test left running


def cli(*args: str, registry: Path) -> subprocess.CompletedProcess:
    """`opslib localcloud ARGS` as a user types it, with `registry` as the per-user registry."""
    from conftest import tool

    return subprocess.run(
        [tool("opslib"), "localcloud", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, control.REGISTRY_ENV: str(registry)},
    )


def start_detached(state: Path, registry: Path) -> control.Running:
    started = cli("start", "--detach", "--port", "0", "--state", str(state), registry=registry)
    assert started.returncode == 0, started.stderr
    running = control.read(state)
    assert running is not None
    return running


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (exit 1, nothing on stdout, no traceback)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_start_on_a_port_another_state_holds_names_it_and_how_to_stop_it(tmp_path, registry):
    other = tmp_path / "other"
    running = start_detached(other, registry)
    mine = tmp_path / "mine"
    for detach in (["--detach"], []):  # in the foreground too, before its banner
        result = cli(
            "start", *detach, "--port", str(running.port), "--state", str(mine), registry=registry
        )
        line = one_line_error(result)
        assert line.startswith(f"error: localcloud: port {running.port} is held by")
        assert f"state {other.resolve()} (pid {running.pid})" in line
        command = line.split("`")[1]
        assert command == f"opslib localcloud stop --state {other.resolve()}"
    assert not mine.exists(), "nothing was started"
    assert control.holder(running.port) == running
    assert control.pick_port(running.port) == 0

    stopped = cli(*shlex.split(command)[2:], registry=registry)  # the command, as printed
    assert stopped.stdout.strip() == "localcloud stopped"
    assert control.read(other) is None


def test_start_on_a_port_a_plain_socket_holds_says_so_in_one_line(tmp_path, registry):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        state = str(tmp_path / "state")
        result = cli("start", "--detach", "--port", str(port), "--state", state, registry=registry)
        assert control.holder(port) is None and not control.port_free(port)
        assert control.pick_port(port) == 0
    line = one_line_error(result)
    assert f"port {port} " in line and "not a localcloud" in line and "--port 0" in line
    assert control.pick_port(port) == port, "a free port is kept"


def test_stop_all_stops_every_registered_localcloud_and_only_those(tmp_path, registry):
    states = [tmp_path / "one", tmp_path / "two"]
    pids = [start_detached(state, registry).pid for state in states]
    elsewhere = tmp_path / "elsewhere"  # registered in the suite's registry, not this one
    control.start(elsewhere, port=0)
    try:
        result = cli("stop", "--all", registry=registry)
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == sorted(
            f"localcloud stopped (pid {pid}, state {state.resolve()})"
            for pid, state in zip(pids, states, strict=True)
        )
        for state in states:
            assert control.read(state) is None
            assert processes_under(state) == []
        assert control.read(elsewhere) is not None, "another registry's localcloud still runs"
        again = cli("stop", "--all", registry=registry)
        assert again.stdout.strip() == "no localcloud was running"
        assert json.loads(registry.read_text()) == {}
    finally:
        control.stop(elsewhere)


def test_stop_all_prunes_dead_entries_and_never_signals_what_it_cannot_verify(tmp_path, registry):
    dead = tmp_path / "dead"
    pid = start_detached(dead, registry).pid
    os.kill(pid, signal.SIGKILL)  # leaves a stale server.json and a dead pid in the registry
    deadline = time.monotonic() + 10
    while control._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # A live pid that does not answer as a localcloud (one still starting, or a reused pid).
    starting = tmp_path / "starting"
    starting.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        entries = json.loads(registry.read_text())
        entries[str(starting)] = {"pid": sleeper.pid, "registered": time.time()}
        registry.write_text(json.dumps(entries))
        result = cli("stop", "--all", registry=registry)
        assert result.stdout.strip() == "no localcloud was running"
        assert list(json.loads(registry.read_text())) == [str(starting)]
        assert sleeper.poll() is None, "never signalled"
    finally:
        sleeper.kill()
        sleeper.wait()


LEAKY = """
import os, subprocess, sys
from pathlib import Path

CHILDREN = []


def test_leaves_a_child_running():
    CHILDREN.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
    Path(os.environ["LEAK_PID_FILE"]).write_text(str(CHILDREN[0].pid))
"""


def run_nested(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """A pytest run of `source` with this suite's conftest (and so its leak check)."""
    folder = tmp_path / "nested"
    folder.mkdir()
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_nested.py").write_text(source)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "OPSLIB_TEST_LEAK_GRACE": "1",
        "LEAK_PID_FILE": str(tmp_path / "pid"),
    }
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-q", "test_nested.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_leak_check_fails_a_run_that_leaves_a_process_and_names_it(tmp_path):
    result = run_nested(tmp_path, LEAKY)
    pid = int((tmp_path / "pid").read_text())
    try:
        assert "1 passed" in result.stdout, result.stdout
        assert result.returncode == 1, result.stdout
        assert "leak check: 1 process(es)" in result.stdout
        assert f"pid {pid}: {sys.executable} -c import time" in result.stdout
    finally:  # kill that child only: it carries this run's marker
        marker = f"OPSLIB_TEST_RUN={os.environ['OPSLIB_TEST_RUN']},".encode()
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        if any(variable.startswith(marker) for variable in environ):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while control._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not control._alive(pid)


def test_leak_check_passes_a_run_that_stops_what_it_starts(tmp_path):
    clean = LEAKY + "    CHILDREN[0].kill()\n    CHILDREN[0].wait()\n"
    result = run_nested(tmp_path, clean)
    assert result.returncode == 0, result.stdout
    assert "leak check" not in result.stdout
