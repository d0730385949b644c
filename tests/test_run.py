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
