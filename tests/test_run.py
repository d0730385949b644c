"""`opslib run` (what `make demo` calls): works on a copy, leaves service/ alone, reruns."""

from __future__ import annotations

import hashlib
import subprocess

from conftest import EXAMPLE, ROOT, SERVICE, tool


def tree_digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_run_twice_on_a_copy(tmp_path):
    before = tree_digest(SERVICE)
    command = [
        tool("opslib"),
        "run",
        str(EXAMPLE),
        "--runs",
        str(tmp_path / "runs"),
        "--source",
        str(SERVICE),
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert "success" in first.stdout and "create" in first.stdout
    copy = tmp_path / "runs" / "example" / "service"
    assert (copy / "scripts" / "batch" / "fx_rates.py").is_file()
    second = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0, second.stderr
    plan_lines = [
        line for line in second.stdout.splitlines() if line.startswith(("scaffold", "endpoint"))
    ]
    assert plan_lines and all("no change" in line for line in plan_lines)
    assert tree_digest(SERVICE) == before


def test_run_stops_with_exit_2_on_a_bad_spec(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("Asia/Seoul", "KST"))
    result = subprocess.run(
        [tool("opslib"), "run", str(bad), "--runs", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "schedule.time_zone" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_git_work_tree_stays_clean_after_a_run(tmp_path):
    status = ["git", "status", "--porcelain", "--untracked-files=all"]
    if subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode != 0:
        return  # not a git checkout (e.g. an sdist): nothing to compare
    before = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    result = subprocess.run(
        [tool("opslib"), "run", str(EXAMPLE)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    after = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before


def _run(params, runs) -> subprocess.CompletedProcess:
    command = [tool("opslib"), "run", str(params), "--runs", str(runs), "--source", str(SERVICE)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_run_keeps_the_users_edits_and_shows_the_failed_step(tmp_path):
    runs = tmp_path / "runs"
    assert _run(EXAMPLE, runs).returncode == 0
    module = runs / "example" / "service" / "scripts" / "batch" / "fx_rates.py"
    module.write_text(
        module.read_text().replace("processed, errors = 0, 0", "processed, errors = 2, 0")
    )
    test = module.parent.parent.parent / "tests" / "test_fx_rates.py"
    test.write_text(
        test.read_text().replace('isinstance(result["processed"], int)', 'result["processed"] == 2')
    )
    edited = _run(EXAMPLE, runs)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    kept = [line for line in edited.stdout.splitlines() if "kept: edited by you" in line]
    assert len(kept) == 2 and all("no change" in line for line in kept), edited.stdout
    assert "'processed': 2" in edited.stdout, "the route ran the user's code"
    assert "processed, errors = 2, 0" in module.read_text()

    module.write_text(
        module.read_text().replace(
            "    _log.info(", "    raise RuntimeError('boom')\n    _log.info(", 1
        )
    )
    failed = _run(EXAMPLE, runs)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    table = failed.stdout[failed.stdout.rindex("step status") :].splitlines()[1:]
    statuses = {line.rsplit(maxsplit=2)[0].strip(): line.split()[-2] for line in table}
    assert statuses == {
        "1 write function": "ok",
        "2 patch endpoint": "ok",
        "2 endpoint checklist": "ok",
        "job unit test": "failed",
    }, failed.stdout
    assert "boom" in failed.stderr
