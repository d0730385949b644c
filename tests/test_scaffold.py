"""Step 1: generated jobs are ruff-clean, their tests pass, re-runs change nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tool
from opslib.core.errors import BadInput
from opslib.spec.loader import load_spec
from opslib.steps.scaffold import scaffold

VARIANTS = {
    "function": {},
    "class": {"job": {"pattern": "class"}},
    "function+source": {"job": {"source_url": "https://api.example.com/v1/latest?base=KRW"}},
    "class+source": {"job": {"pattern": "class", "source_url": "https://api.example.com/v1/x"}},
}


def generated(service_dir: Path, module: str = "fx_rates") -> list[Path]:
    return [
        service_dir / "scripts" / "batch" / f"{module}.py",
        service_dir / "tests" / f"test_{module}.py",
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_generated_code_is_ruff_clean_and_its_test_passes(service_dir, write_params, variant):
    spec = load_spec(write_params(**VARIANTS[variant]))
    plan = scaffold(spec, service_dir)
    assert [c.action for c in plan.changes] == ["create", "create"]
    files = [str(p) for p in generated(service_dir)]
    config = ["--config", str(ROOT / "pyproject.toml")]
    lint = subprocess.run([tool("ruff"), "check", *config, *files], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [tool("ruff"), "format", "--check", "--diff", *config, *files],
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fx_rates.py"],
        cwd=service_dir,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout


def test_patterns_follow_the_seed(service_dir, write_params):
    function = load_spec(write_params("f"))
    scaffold(function, service_dir)
    text = generated(service_dir)[0].read_text()
    assert "def fx_rates(dry_run=False):" in text and "_log = logging.getLogger(__name__)" in text
    klass = load_spec(write_params("c", job={"name": "fx-class", "pattern": "class"}))
    scaffold(klass, service_dir)
    text = generated(service_dir, "fx_class")[0].read_text()
    assert "class FxClass:" in text and "def __init__(self, test_mode=False):" in text
    assert "async def run(self, **kwargs):" in text


def _state(paths: list[Path]) -> list[tuple[int, bytes]]:
    return [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths]


def test_rerun_changes_nothing(service_dir, write_params):
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    before = _state(generated(service_dir))
    plan = scaffold(spec, service_dir)
    assert [c.action for c in plan.changes] == ["no change", "no change"]
    assert _state(generated(service_dir)) == before


def test_different_content_is_a_conflict_unless_forced(service_dir, write_params):
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    module = generated(service_dir)[0]
    module.write_text(module.read_text() + "\n# my own edits\n")
    edited = module.read_text()
    with pytest.raises(BadInput) as info:
        scaffold(spec, service_dir)
    assert str(module) in str(info.value) and "--force" in info.value.fix
    assert module.read_text() == edited
    plan = scaffold(spec, service_dir, force=True)
    assert [c.action for c in plan.changes] == ["update", "no change"]
    assert "# my own edits" not in module.read_text()


def test_dry_run_writes_nothing(service_dir, write_params):
    plan = scaffold(load_spec(write_params()), service_dir, dry_run=True)
    assert [c.action for c in plan.changes] == ["create", "create"]
    assert not any(p.exists() for p in generated(service_dir))


def test_not_a_service_directory(tmp_path, write_params):
    with pytest.raises(BadInput) as info:
        scaffold(load_spec(write_params()), tmp_path)
    assert "batch_endpoint.py" in str(info.value)


def test_cli_scaffold_and_force(service_dir, write_params):
    params = str(write_params())
    run = [tool("opslib"), "scaffold", params, "--service-dir", str(service_dir)]
    assert subprocess.run(run, capture_output=True).returncode == 0
    module = generated(service_dir)[0]
    module.write_text("# mine\n")
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr
    assert module.read_text() == "# mine\n"
    assert subprocess.run([*run, "--force"], capture_output=True).returncode == 0
    assert "def fx_rates" in module.read_text()


def test_keep_edited_keeps_the_users_file(service_dir, write_params):
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    module = generated(service_dir)[0]
    module.write_text(module.read_text() + "\n# my own edits\n")
    edited = _state([module])
    plan = scaffold(spec, service_dir, keep_edited=True)
    assert [(c.action, c.detail) for c in plan.changes] == [
        ("no change", "kept: edited by you"),
        ("no change", ""),
    ]
    assert _state([module]) == edited


def test_code_that_would_not_compile_is_never_written(service_dir, write_params):
    spec = load_spec(write_params())
    # The spec refuses control characters; this checks step 1's own guard behind it.
    job = spec.job.model_copy(update={"description": "NUL\x00here"})
    with pytest.raises(BadInput) as info:
        scaffold(spec.model_copy(update={"job": job}), service_dir)
    assert "does not compile" in str(info.value) and "job.description" in info.value.fix
    assert not any(p.exists() for p in generated(service_dir))
