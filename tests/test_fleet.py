"""Many automations, one service: the shared folder, the fleet run and the deploy preflight.

The seed's model is one batch_endpoint.py serving many jobs. These tests run the steps the way
a team does over the years (one job, then another; or the whole parameters/ folder) against
real localcloud processes, and check that a deploy for one job never breaks another.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import lc
import papermill
import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1
from project import add_params, job_of, make_project

from conftest import DELETE, ROOT, tool
from opslib.core.errors import BadInput
from opslib.fleet import steps as fleet_steps
from opslib.fleet.load import open_fleet, service_spec
from opslib.localcloud import control

MUTATING = {"POST", "PATCH", "PUT", "DELETE"}
READS = (":list", "entries:list", ":getIamPolicy", ":testIamPermissions")
NOTEBOOKS = ROOT / "notebooks"


def opslib(root: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": url}
    return subprocess.run(
        [tool("opslib"), *args], capture_output=True, text=True, cwd=root, env=env
    )


def mutations(since: int) -> list[tuple[str, str]]:
    """Mutating calls localcloud received since `since` (list/read calls sent as POST excluded)."""
    calls = lc.call(f"/_localcloud/calls?since={since}")[1]["calls"]
    return [
        (c["method"], c["path"])
        for c in calls
        if c["method"] in MUTATING and not c["path"].endswith(READS)
    ]


def mark() -> int:
    return lc.call("/_localcloud/calls?since=0")[1]["next"]


def two_jobs(root: Path, service: str) -> tuple[Path, Path]:
    """example.yaml as shipped, and a copy with only job.name and the cron changed."""
    first = add_params(root, "example", service=service, job={"name": lc.unique("fx")})
    second = add_params(
        root,
        "kr-prices",
        service=service,
        job={"name": lc.unique("kr")},
        schedule={"cron": "0 8 * * 2-6"},
    )
    return first, second


@pytest.fixture
def own_localcloud(tmp_path):
    """A localcloud of this test's own (it is stopped and started again in the test)."""
    state = tmp_path / "state"
    running = control.start(state, port=0)
    yield state, running
    control.stop(state)


@pytest.mark.parametrize("order", ["example-first", "kr-prices-first"])
def test_a_second_job_on_the_service_never_breaks_the_first(tmp_path, own_localcloud, order):
    """The issue's scenario: run one file, then the other; both verify, also after a restart."""
    state, running = own_localcloud
    root = make_project(tmp_path / "project")
    files = list(two_jobs(root, lc.unique("svc")))
    if order == "kr-prices-first":
        files.reverse()
    for params in files:
        result = opslib(root, running.url, "run", str(params))
        assert result.returncode == 0, result.stdout + result.stderr
    endpoint = (root / "service" / "batch_endpoint.py").read_text()
    assert all(f"/run-{job_of(p)}" in endpoint for p in files), "one folder holds both jobs"
    for params in files:
        verified = opslib(root, running.url, "verify", str(params), "--quiet")
        assert verified.returncode == 0, verified.stdout + verified.stderr

    assert opslib(root, running.url, "localcloud", "stop", "--state", str(state)).returncode == 0
    again = control.start(state, port=running.port)
    for params in files:
        verified = opslib(root, again.url, "verify", str(params), "--quiet")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_deploy_refuses_to_drop_a_route_a_live_job_calls(tmp_path, monkeypatch):
    url = lc.server().url
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", url)
    root = make_project(tmp_path / "project")
    live_job, kept_job = two_jobs(root, lc.unique("svc"))
    fleet = open_fleet(root / "parameters")
    fleet_steps.write_functions(fleet)
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)
    clients = fleet.sessions[0].clients
    spec = fleet.sessions[0].spec
    service_path = f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"
    serving = clients.run.get_service(name=service_path).latest_ready_revision

    # A teammate's checkout that only has kr-prices: its service folder lacks /run-<fx>.
    other = make_project(tmp_path / "other")
    shutil.copy(kept_job, other / "parameters" / kept_job.name)
    fleet_steps.write_functions(open_fleet(other / "parameters"))
    fleet_steps.patch_endpoints(open_fleet(other / "parameters"))
    before = mark()
    refused = opslib(other, url, "deploy", f"parameters/{kept_job.name}")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    dropped = f"/run-{job_of(live_job)}"
    assert f"scheduler job {job_of(live_job)} (enabled) calls {dropped}" in refused.stderr
    assert "--prune" in refused.stderr and "fix:" in refused.stderr
    assert re.search(rf"route {dropped}\s+delete", refused.stdout), refused.stdout
    assert "BLOCKS the deploy" in refused.stdout
    assert mutations(before) == [], "refused before any mutating call"
    assert clients.run.get_service(name=service_path).latest_ready_revision == serving

    pruned = opslib(other, url, "deploy", f"parameters/{kept_job.name}", "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert re.search(
        rf"scheduler job {job_of(live_job)}\s+update .*paused \(--prune\)", pruned.stdout
    )
    assert f"gcloud scheduler jobs pause {job_of(live_job)}" in pruned.stdout
    job_path = f"projects/{spec.project}/locations/{spec.region}/jobs/"
    state = clients.scheduler.get_job(name=job_path + job_of(live_job)).state
    assert state == scheduler_v1.Job.State.PAUSED
    kept = clients.scheduler.get_job(name=job_path + job_of(kept_job)).state
    assert kept == scheduler_v1.Job.State.ENABLED
    assert clients.run.get_service(name=service_path).latest_ready_revision != serving
    verified = opslib(other, url, "verify", f"parameters/{kept_job.name}", "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_folder_of_three_jobs_on_two_services_deploys_each_service_once(tmp_path):
    url = lc.server().url
    root = make_project(tmp_path / "project")
    svc, other = lc.unique("svc"), lc.unique("rep")
    first, second = two_jobs(root, svc)
    third = add_params(
        root,
        "monthly-report",
        base=ROOT / "parameters" / "monthly-report.yaml",
        service=other,
        service_dir=f"services/{other}",
        job={"name": lc.unique("report")},
        region=lc.REGION,
        secrets=DELETE,
    )
    before = mark()
    result = opslib(root, url, "run", "parameters/")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = lc.call(f"/_localcloud/calls?since={before}")[1]["calls"]
    builds = [c for c in calls if c["method"] == "POST" and c["path"].endswith("/builds")]
    assert len(builds) == 2, "one build per service, not per job"
    rows = re.findall(r"^\s*(\S+)\s+(\S+)\s+ok 1,2,3,4,5\s+PASSED$", result.stdout, re.M)
    expected = {(job_of(first), svc), (job_of(second), svc), (job_of(third), other)}
    assert set(rows) == expected, result.stdout
    shared = (root / "service" / "batch_endpoint.py").read_text()
    own = (root / "services" / other / "batch_endpoint.py").read_text()
    assert f"/run-{job_of(first)}" in shared and f"/run-{job_of(second)}" in shared
    assert f"/run-{job_of(third)}" in own and f"/run-{job_of(first)}" not in own
    assert f"/run-{job_of(third)}" not in shared

    before = mark()
    again = opslib(root, url, "run", "parameters/")
    assert again.returncode == 0, again.stdout + again.stderr
    calls = lc.call(f"/_localcloud/calls?since={before}")[1]["calls"]
    assert not [c for c in calls if c["path"].endswith("/builds")], "nothing changed: no build"


def test_the_step_notebooks_take_a_list_or_a_folder_through_papermill(tmp_path):
    root = make_project(tmp_path / "project")
    first, second = two_jobs(root, lc.unique("svc"))
    as_list = {"params": [str(first), str(second)], "progress": False}
    papermill.execute_notebook(
        str(NOTEBOOKS / "01_write_function.ipynb"),
        str(tmp_path / "01.ipynb"),
        parameters=as_list,
        cwd=str(root),
        kernel_name="python3",
        progress_bar=False,
    )
    batch = root / "service" / "scripts" / "batch"
    modules = {job_of(p).replace("-", "_") for p in (first, second)}
    assert {p.stem for p in batch.glob("*.py")} >= modules
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_patch_endpoint.ipynb"),
        str(tmp_path / "02.ipynb"),
        parameters={"params": "parameters", "progress": False},
        cwd=str(root),
        kernel_name="python3",
        progress_bar=False,
    )
    endpoint = (root / "service" / "batch_endpoint.py").read_text()
    assert f"/run-{job_of(first)}" in endpoint and f"/run-{job_of(second)}" in endpoint


def test_the_rules_between_automations(tmp_path):
    root = make_project(tmp_path / "project")
    add_params(root, "a", service="svc-a", job={"name": "job-a"})
    add_params(root, "b", service="svc-b", job={"name": "job-b"})
    with pytest.raises(BadInput) as folder:
        open_fleet(root / "parameters")
    assert "both use the folder service" in str(folder.value)
    assert "service_dir: services/svc-b" in str(folder.value)

    add_params(root, "b", service="svc-a", job={"name": "job-a"}, deploy={"memory": "4Gi"})
    with pytest.raises(BadInput) as clash:
        open_fleet(root / "parameters")
    text = str(clash.value)
    assert "both name job 'job-a'" in text
    assert re.search(
        r"deploy.memory is 2Gi in parameters/a.yaml:\d+ but 4Gi in parameters/b.yaml:\d+", text
    )
    assert "2 conflict(s)" in text

    add_params(root, "b", service="svc-a", job={"name": "job-b"}, deploy={"env": {"MODE": "x"}})
    add_params(root, "c", service="svc-a", job={"name": "job-c"}, secrets={"MODE": "s:latest"})
    with pytest.raises(BadInput) as mixed:
        open_fleet(root / "parameters")
    assert re.search(
        r"MODE is deploy.env.MODE in parameters/b.yaml:\d+ and secrets.MODE in parameters/c.yaml",
        str(mixed.value),
    ), str(mixed.value)

    (root / "parameters" / "c.yaml").unlink()
    fleet = open_fleet([root / "parameters", root / "parameters" / "a.yaml"])
    assert [s.spec.job.name for s in fleet.sessions] == ["job-a", "job-b"], "each file once"
    merged = service_spec([s.spec for s in fleet.sessions])
    # Both jobs guard against overlap (the default): the service gets the lease bucket too.
    assert merged.deploy.env == {"MODE": "x", "OPSLIB_LEASE_BUCKET": "demo-project-opslib-leases"}

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="holds no"):
        open_fleet(empty)


def test_service_dir_must_stay_inside_the_project(tmp_path):
    root = make_project(tmp_path / "project")
    path = add_params(root, "a", service_dir="../elsewhere")
    result = subprocess.run(
        [tool("opslib"), "check", str(path)], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 2 and "service_dir" in result.stderr
    assert "relative to its root" in result.stderr


def test_destroy_one_of_two_jobs_keeps_the_other_and_a_second_destroy_does_nothing(
    tmp_path, monkeypatch
):
    url = lc.server().url
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", url)
    root = make_project(tmp_path / "project")
    kept, gone = two_jobs(root, lc.unique("svc"))
    result = opslib(root, url, "run", "parameters/")
    assert result.returncode == 0, result.stdout + result.stderr
    endpoint = root / "service" / "batch_endpoint.py"
    module = root / "service" / "scripts" / "batch" / f"{job_of(gone).replace('-', '_')}.py"
    assert module.is_file() and f"/run-{job_of(gone)}" in endpoint.read_text()

    preview = opslib(root, url, "destroy", f"parameters/{gone.name}", "--dry-run")
    assert preview.returncode == 0 and "redeployed without" in preview.stdout, preview.stdout
    assert module.is_file(), "a dry run changes nothing"

    destroyed = opslib(root, url, "destroy", f"parameters/{gone.name}")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not module.exists() and f"/run-{job_of(gone)}" not in endpoint.read_text()
    assert f"/run-{job_of(kept)}" in endpoint.read_text()
    spec = open_fleet(kept).sessions[0].spec
    clients = open_fleet(kept).sessions[0].clients
    with pytest.raises(exceptions.NotFound):
        clients.scheduler.get_job(
            name=f"projects/{spec.project}/locations/{spec.region}/jobs/{job_of(gone)}"
        )
    service = clients.run.get_service(
        name=f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"
    )
    assert service.template.annotations["opslib/routes"].split(",") == [
        "/",
        "/health",
        f"/run-{job_of(kept)}",
    ], "the serving revision no longer has the route"
    verified = opslib(root, url, "verify", f"parameters/{kept.name}", "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    before = mark()
    again = opslib(root, url, "destroy", f"parameters/{gone.name}")
    assert again.returncode == 0 and "nothing to destroy" in again.stdout, again.stdout
    assert mutations(before) == []


def test_destroy_the_last_job_deletes_the_service_only_when_asked(tmp_path, monkeypatch):
    url = lc.server().url
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", url)
    root = make_project(tmp_path / "project")
    only = add_params(root, "only", service=lc.unique("svc"), job={"name": lc.unique("solo")})
    fleet = open_fleet(only)
    fleet_steps.write_functions(fleet)
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)
    kept = opslib(root, url, "destroy", "parameters/only.yaml")
    assert kept.returncode == 0 and "--service deletes it" in kept.stdout, kept.stdout
    spec = fleet.sessions[0].spec
    name = f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"
    clients = fleet.sessions[0].clients
    assert clients.run.get_service(name=name).name == name
    deleted = opslib(root, url, "destroy", "parameters/only.yaml", "--service")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "gcloud run services delete" in deleted.stdout
    with pytest.raises(exceptions.NotFound):
        clients.run.get_service(name=name)
    assert (
        "nothing to destroy"
        in opslib(root, url, "destroy", "parameters/only.yaml", "--service").stdout
    )
