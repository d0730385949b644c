"""`opslib run` (what `make demo` calls): the five step notebooks through papermill, on localcloud.

Every run here executes the committed notebooks on a real kernel against the session's real
localcloud, in a throwaway project (a copy of service/ and its own parameters/), so the steps
write that project's service folder as they write a user's, and the committed one never changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import lc
import nbformat
import yaml
from project import add_params, job_of, make_project

from conftest import EXAMPLE, ROOT, SERVICE, SHIPPED_PARAMS, tool

MONTHLY = ROOT / "parameters" / "monthly-report.yaml"


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def env() -> dict[str, str]:
    return {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}


def opslib_run(params: Path, runs: Path | None, *extra: str) -> subprocess.CompletedProcess:
    """`opslib run` from the project `params` belongs to (the repository's for its own files)."""
    command = [tool("opslib"), "run", str(params), *extra]
    if runs is not None:
        command += ["--runs", str(runs)]
    root = params.parent.parent if params.parent.name == "parameters" else ROOT
    return subprocess.run(command, capture_output=True, text=True, cwd=root, env=env())


def unique_params(tmp_path: Path, base: Path, stem: str) -> Path:
    """`base` in a new project of its own, with its own service and job names, so runs here
    never meet other tests' resources."""
    root = tmp_path / "project"
    if not root.exists():
        make_project(root)
    names = {"service": lc.unique("svc"), "job": {"name": lc.unique(stem)}}
    return add_params(root, stem, base, **names, region=lc.REGION, service_dir="service")


def summary(runs: Path, job: str) -> tuple[Path, dict]:
    """The newest run's folder (runs/<job>/<UTC time>) and its summary.json."""
    newest = sorted((runs / job).iterdir())[-1]
    return newest, json.loads((newest / "summary.json").read_text())


def outputs(notebook: Path) -> str:
    """Everything a notebook showed: text/plain results, streams and errors."""
    book = nbformat.read(notebook, as_version=4)
    texts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(out.get("data", {}).get("text/plain", ""))
            texts.append(out.get("evalue", ""))
    return "\n".join(texts)


def actions(notebook: Path) -> list[str]:
    """The action column of every plan the notebook showed."""
    found = []
    for line in outputs(notebook).splitlines():
        line = line.split("gcloud ")[0]  # the equivalent command's own verbs are not actions
        for action in ("no change", "create", "update", "delete"):
            if f" {action} " in f" {line} " and line.split()[0].isdigit():
                found.append(action)
                break
    return found


def test_all_five_steps_then_a_second_run_changes_nothing(tmp_path):
    params = unique_params(tmp_path, EXAMPLE, "fx")
    runs = tmp_path / "runs"
    before = tree_digest(SERVICE)

    first = opslib_run(params, runs)
    assert first.returncode == 0, first.stdout + first.stderr
    folder, data = summary(runs, job_of(params))
    assert [(s["step"], s["status"]) for s in data["steps"]] == [(n, "ok") for n in range(1, 6)]
    assert data["verify_passed"] is True and data["passed"] is True
    assert "PASSED  verify " in first.stdout and "scheduler attempt" in first.stdout
    for step in data["steps"]:
        book = nbformat.read(step["output"], as_version=4)
        assert book.metadata.papermill.exception is None
    assert "create" in actions(folder / "03_deploy.ipynb")  # built and deployed for real
    assert "create" in actions(folder / "04_schedule.ipynb")
    verdicts = json.loads((folder / "verify.json").read_text())["jobs"]
    assert verdicts[job_of(params)]["attempt"] == "OK" and verdicts[job_of(params)]["passed"]

    second = opslib_run(params, runs)
    assert second.returncode == 0, second.stdout + second.stderr
    folder2, _ = summary(runs, job_of(params))
    assert folder2 != folder, "each run keeps its own notebooks"
    for name in ("01_write_function", "02_patch_endpoint", "03_deploy", "04_schedule"):
        seen = actions(folder2 / f"{name}.ipynb")
        assert seen and set(seen) == {"no change"}, (name, seen)
    assert tree_digest(SERVICE) == before, "the repository's service/ is never edited"
    module = params.parent.parent / "service" / "scripts" / "batch"
    assert (module / f"{job_of(params).replace('-', '_')}.py").is_file(), "the project's folder"


def test_a_non_default_spec_class_pattern_secret_and_min_instances_zero(tmp_path):
    """monthly-report: async class job, a Secret Manager ref, Tokyo time, scale to zero."""
    params = unique_params(tmp_path, MONTHLY, "report")
    secret = lc.unique("report-key")
    data = yaml.safe_load(params.read_text())
    data["secrets"] = {"REPORT_API_KEY": f"{secret}:latest"}
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    added = subprocess.run(
        [tool("opslib"), "secrets", "add", str(params), secret],
        input="s3cr3t-value-never-shown",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
    )
    assert added.returncode == 0, added.stdout + added.stderr

    result = opslib_run(params, tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    folder, data = summary(tmp_path / "runs", job_of(params))
    assert data["verify_passed"] is True
    module = params.parent.parent / "service" / "scripts" / "batch"
    assert "async def run" in next(module.glob("report_*.py")).read_text()
    shown = outputs(folder / "04_schedule.ipynb")
    assert "Asia/Tokyo" in shown
    for notebook in folder.glob("*.ipynb"):
        assert "s3cr3t-value-never-shown" not in notebook.read_text()


def test_a_failing_step_stops_the_run_and_its_notebook_shows_where(tmp_path):
    params = unique_params(tmp_path, EXAMPLE, "edit")
    runs = tmp_path / "runs"
    assert opslib_run(params, runs, "--steps", "1-2").returncode == 0
    module = next((params.parent.parent / "service" / "scripts" / "batch").glob("edit_*.py"))
    module.write_text(
        module.read_text().replace(
            "    _log.info(", "    raise RuntimeError('boom in the job')\n    _log.info(", 1
        )
    )

    failed = opslib_run(params, runs)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    rows = re.findall(r"^\s*(\d)\s+\w+\s+(ok|failed|not run)\s+[\d.]+$", failed.stdout, re.M)
    assert rows == [
        ("1", "ok"),
        ("2", "failed"),
        ("3", "not run"),
        ("4", "not run"),
        ("5", "not run"),
    ], failed.stdout
    assert "02_patch_endpoint.ipynb" in failed.stderr
    folder, data = summary(runs, job_of(params))
    assert data["passed"] is False and data["verify_passed"] is False
    book = nbformat.read(folder / "02_patch_endpoint.ipynb", as_version=4)
    assert book.metadata.papermill.exception is True
    errors = [o for c in book.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors and "boom in the job" in outputs(folder / "02_patch_endpoint.ipynb")
    assert not (folder / "03_deploy.ipynb").exists()
    assert "raise RuntimeError('boom in the job')" in module.read_text(), "the user's edit stays"


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("Asia/Seoul", "KST"))
    result = opslib_run(bad, tmp_path / "runs")
    assert result.returncode == 2 and "schedule.time_zone" in result.stderr
    for steps in ("0-3", "5-1", "x", "1-6"):
        result = opslib_run(EXAMPLE, tmp_path / "runs", "--steps", steps)
        assert result.returncode == 2, (steps, result.stderr)
        assert "--steps" in result.stderr and "1-5" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_make_demo_runs_the_examples_as_a_fleet_and_leaves_the_work_tree_clean(tmp_path):
    """`make demo`: the example automations on one service, in a workspace copy under runs/.

    It runs in a project as the repository ships it (its Makefile and .gitignore, the seed's
    service/, the shipped parameters files), kept in git to see that its tree stays clean: in
    the repository itself a quick-start file naming batch-service would join the deploy, and
    `make demo` would write the repository's runs/.
    """
    root = make_project(tmp_path / "project")
    for shipped in (ROOT / "Makefile", ROOT / ".gitignore"):
        shutil.copy(shipped, root / shipped.name)
    for params in SHIPPED_PARAMS:
        shutil.copy(params, root / "parameters" / params.name)
    git = ["git", "-c", "user.name=opslib tests", "-c", "user.email=tests@localhost"]
    git += ["-c", "commit.gpgsign=false"]
    commit = ["commit", "-q", "--no-verify", "-m", "the seed"]
    for command in (["init", "-q"], ["add", "-A"], commit):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)
    status = ["git", "status", "--porcelain", "--untracked-files=all"]
    before = subprocess.run(status, cwd=root, capture_output=True, text=True).stdout
    python = f"BIN={Path(tool('opslib')).parent}"  # the interpreter running these tests
    result = subprocess.run(
        ["make", "-s", "demo", python, "STAMP="],
        capture_output=True,
        text=True,
        cwd=root,
        env=env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED  verify fx-rates, kr-prices" in result.stdout
    rows = re.findall(r"^\s*(\S+)\s+batch-service\s+ok 1,2,3,4,5\s+PASSED$", result.stdout, re.M)
    assert sorted(rows) == ["fx-rates", "kr-prices"], result.stdout
    workspace = root / "runs" / "workspace" / "service" / "batch_endpoint.py"
    assert "/run-fx-rates" in workspace.read_text() and "/run-kr-prices" in workspace.read_text()
    after = subprocess.run(status, cwd=root, capture_output=True, text=True).stdout
    assert after == before == ""


def test_target_gcp_goes_to_google_through_the_official_clients(tmp_path):
    """`--target gcp` starts no localcloud; offline, the Google client stops at credentials."""
    environment = {k: v for k, v in env().items() if k != "OPSLIB_LOCALCLOUD_URL"}
    environment |= {
        "NO_GCE_CHECK": "True",  # google-auth: do not probe the GCE metadata server
        "OPSLIB_LOCALCLOUD_STATE": str(tmp_path / "state"),
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
    }
    command = [tool("opslib"), "run", str(EXAMPLE), "--target", "gcp", "--steps", "3"]
    result = subprocess.run(
        [*command, "--runs", str(tmp_path / "runs"), "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DefaultCredentialsError" in result.stdout
    assert not (tmp_path / "state").exists(), "no localcloud for target gcp"
    _, data = summary(tmp_path / "runs", "fx-rates")
    assert data["target"] == "gcp" and data["steps"][0]["status"] == "failed"
