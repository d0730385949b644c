"""Work over 30 minutes as a Cloud Run job: the five steps end to end on localcloud.

The shipped parameters/nightly-backfill.yaml (2 h, 4 tasks) runs in a throwaway project: the
job module is scaffolded with its container entry point, deployed as a Run v2 job from the
service folder's image, scheduled through the Run Admin API with an OAuth token, and verified
from its execution's tasks and logs. The template's job does nothing yet, so a "2 h" job runs in
milliseconds: the durations are the spec's, the run is real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import lc
import nbformat
import pytest
from google.cloud import scheduler_v1
from project import add_params, job_of, make_project

from conftest import ROOT, tool
from opslib.fleet.load import open_fleet
from opslib.steps.verify.job import execution_logs

NIGHTLY = ROOT / "parameters" / "nightly-backfill.yaml"


def opslib(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    return subprocess.run(
        [tool("opslib"), *args], capture_output=True, text=True, cwd=root, env=env
    )


def actions(notebook: Path) -> list[str]:
    """The action column of each plan row the notebook showed."""
    book = nbformat.read(notebook, as_version=4)
    text = "\n".join(
        o.get("data", {}).get("text/plain", "") for c in book.cells for o in c.get("outputs", [])
    )
    return re.findall(r"\s(create|update|delete|no change)\s", text)


def newest(runs: Path, job: str) -> Path:
    return sorted((runs / job).iterdir())[-1]


@pytest.fixture
def nightly(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)
    root = make_project(tmp_path / "project")
    params = add_params(
        root, "nightly", NIGHTLY, service=lc.unique("svc"), job={"name": lc.unique("night")}
    )
    return root, params


def test_nightly_backfill_deploys_schedules_with_oauth_and_verifies_four_tasks(nightly):
    root, params = nightly
    first = opslib(root, "run", "parameters/nightly.yaml")
    assert first.returncode == 0, first.stdout + first.stderr
    job = job_of(params)
    assert re.search(rf"^\s*{job}\s+\S+\s+ok 1,2,3,4,5\s+PASSED$", first.stdout, re.M), first.stdout
    folder = newest(root / "runs", job)
    report = json.loads((folder / "verify.json").read_text())["jobs"][job]
    execution = next(c for c in report["checks"] if c["check"] == "execution")
    assert "4 of 4 task(s) succeeded" in execution["value"]
    module = root / "service" / "scripts" / "batch" / f"{job.replace('-', '_')}.py"
    assert "run_task" in module.read_text() and "task_index" in module.read_text()
    assert f"/run-{job}" not in (root / "service" / "batch_endpoint.py").read_text()

    session = open_fleet(params).sessions[0]
    spec, clients = session.spec, session.clients
    scheduled = clients.scheduler.get_job(
        name=f"projects/{spec.project}/locations/{spec.region}/jobs/{job}"
    )
    target = scheduled.http_target
    assert target.uri == (
        f"https://run.googleapis.com/v2/projects/{spec.project}/locations/{spec.region}"
        f"/jobs/{job}:run"
    )
    assert target.oauth_token.scope == "https://www.googleapis.com/auth/cloud-platform"
    assert target.oauth_token.service_account_email == spec.invoker_account
    assert not target.oidc_token.service_account_email, "OAuth, not OIDC, for Google APIs"
    cloud_run_job = f"projects/{spec.project}/locations/{spec.region}/jobs/{job}"
    policy = clients.jobs.get_iam_policy(request={"resource": cloud_run_job})
    members = {m for b in policy.bindings if b.role == "roles/run.invoker" for m in b.members}
    assert members == {f"serviceAccount:{spec.invoker_account}"}, "on this job, for this account"
    live = clients.jobs.get_job(name=cloud_run_job)
    assert live.template.task_count == 4 and live.template.parallelism == 2
    assert list(live.template.template.containers[0].args) == [
        "-m",
        f"scripts.batch.{job.replace('-', '_')}",
    ]
    assert scheduled.state == scheduler_v1.Job.State.ENABLED

    again = opslib(root, "run", "parameters/nightly.yaml")
    assert again.returncode == 0, again.stdout + again.stderr
    folder = newest(root / "runs", job)
    for name in ("01_write_function", "02_patch_endpoint", "03_deploy", "04_schedule"):
        seen = actions(folder / f"{name}.ipynb")
        assert seen and set(seen) == {"no change"}, (name, seen)


def _break(module: Path, condition: str, message: str) -> None:
    """Make the job raise `message` when `condition` holds (a user's bug, or a flaky API)."""
    text = module.read_text()
    anchor = "    # Each task takes its share"
    assert anchor in text
    module.write_text(
        text.replace(
            anchor,
            f"    import os\n\n    if {condition}:\n"
            f"        raise RuntimeError({message!r})\n{anchor}",
            1,
        )
    )


def test_a_task_that_fails_once_is_retried_and_one_that_keeps_failing_fails_verify(nightly):
    root, params = nightly
    assert opslib(root, "run", "parameters/nightly.yaml").returncode == 0
    job = job_of(params)
    module = root / "service" / "scripts" / "batch" / f"{job.replace('-', '_')}.py"
    original = module.read_text()
    _break(module, 'task_index == 2 and os.environ["CLOUD_RUN_TASK_ATTEMPT"] == "0"', "flaky 2")
    retried = opslib(root, "run", "parameters/nightly.yaml", "--steps", "3-5")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    report = json.loads((newest(root / "runs", job) / "verify.json").read_text())["jobs"][job]
    execution = next(c for c in report["checks"] if c["check"] == "execution")
    assert "4 of 4 task(s) succeeded" in execution["value"] and "1 retried" in execution["value"]

    module.write_text(original)
    _break(module, "task_index == 1", "shard 1 cannot reach the archive")
    failed = opslib(root, "run", "parameters/nightly.yaml", "--steps", "3-5")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "task 1: " in failed.stdout + failed.stderr
    assert "shard 1 cannot reach the archive" in failed.stdout + failed.stderr
    verified = opslib(root, "verify", "parameters/nightly.yaml", "--quiet")
    assert verified.returncode == 1
    assert re.search(r"failed tasks\s+task 1: .*shard 1 cannot reach the archive", verified.stdout)


def test_a_second_execution_while_one_runs_is_skipped(nightly):
    """overlap: skip on a Cloud Run job: the later execution sees the earlier one running."""
    root, params = nightly
    job = job_of(params)
    fleet = open_fleet(params)
    from opslib.fleet import steps as fleet_steps

    fleet_steps.write_functions(fleet)
    module = root / "service" / "scripts" / "batch" / f"{job.replace('-', '_')}.py"
    _break(module, "False", "never")  # adds `import os` at the anchor; then a slow first run
    module.write_text(
        module.read_text().replace(
            "    # Each task takes its share",
            "    import time\n\n    time.sleep(4)\n    # Each task takes its share",
            1,
        )
    )
    fleet_steps.deploy(fleet, progress=False)
    session = fleet.sessions[0]
    clients, spec = session.clients, session.spec
    name = f"projects/{spec.project}/locations/{spec.region}/jobs/{job}"
    first = clients.jobs.run_job(name=name).metadata.name
    time.sleep(1.5)
    second = clients.jobs.run_job(name=name).metadata.name
    done = {}
    deadline = time.monotonic() + 60
    while len(done) < 2 and time.monotonic() < deadline:
        for execution in (first, second):
            got = clients.executions.get_execution(name=execution)
            if got.completion_time:
                done[execution] = got
        time.sleep(0.5)
    assert len(done) == 2 and all(e.succeeded_count == 4 for e in done.values())
    lines = {}
    for execution in (first, second):
        frame = execution_logs(clients, spec, done[execution])
        lines[execution] = set(frame["status"].dropna())
    assert "success" in lines[first] and "skipped" not in lines[first]
    assert lines[second] == {"skipped"}, "every task of the later execution skipped the work"
