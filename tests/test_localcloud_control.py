"""localcloud as a process: state survives a restart, stop leaves nothing running, reset empties."""

from __future__ import annotations

import os
import subprocess
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
