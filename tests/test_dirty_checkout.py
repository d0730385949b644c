"""`make test` passes in a checkout a user has worked in (issue 18, point 7).

An operator keeps their API keys in .env, opens the notebooks in JupyterLab and runs them there:
they answer the quick start's questions in its parameters cell and run it (it writes
parameters/fx-daily.yaml), point step 1's `params` at that file, let steps 1-2 write the example's
job into service/ (its module and test, its route in batch_endpoint.py), and the notebooks are
saved with their outputs; then they edit the job, which is their code now. This builds such a
checkout (a clone of the repository carrying this tests/ folder and Makefile), dirties it that
way, and runs there the lint and the tests that read those files, as a user's `make test` would.
A notebook saved with outputs is the user's until they stage it; staged, the outputs check fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, tool

# The tests that failed in such a checkout, where they read its notebooks, parameters/ and
# service/ (the quick ones: those running papermill or localcloud use the same copies, and
# take minutes; so do the slowest below, which use no file of the checkout but the seed's).
SLOW = ("papermill", "secrets_notebook", "any_valid_job_name", "hand_written_service_runs")
SENSITIVE = [
    "-k",
    " and ".join(f"not {name}" for name in SLOW),
    "tests/test_notebooks.py",
    "tests/test_scaffold.py",
    "tests/test_service.py",
    "tests/test_endpoint.py",
    *(
        f"tests/test_endpoint_remove.py::test_{name}"
        for name in (
            "removing_all_gives_the_original_back[template]",
            "the_committed_service_comes_back_byte_for_byte_once_it_has_the_imports",
            "nothing_to_remove_in_a_fresh_service",
        )
    ),
    "tests/test_spec.py::test_shipped_parameters_are_valid",
    "tests/test_quickstart.py::test_env_file_gives_key_names_and_never_values",
    "tests/test_widgets.py::test_default_run_writes_a_new_file_and_shows_the_picker",
    "tests/test_widgets.py::test_the_notebook_is_thin_committed_without_outputs_and_safe_by_default",
]
# What the user adds to the job step 1 wrote for them: their code, in their style.
USER_EDIT = "\n\nimport json\ndef their_helper( rows ):\n    return json.dumps(rows)\n"


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, result.args))}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, shown(result)
    return result


def pytest_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest in `root`, its temporary folders under `root`'s parent; -P: opslib comes from this
    environment (the code being developed), not from the clone's copy of it."""
    options = ["-q", "-p", "no:cacheprovider", f"--basetemp={root.parent / 'pytest'}"]
    return run([sys.executable, "-P", "-m", "pytest", *options, *args], root, timeout=600)


def answer(notebook: Path, old: str, new: str) -> None:
    """What a user types into a notebook's parameters cell in JupyterLab, saved."""
    book = nbformat.read(notebook, as_version=4)
    (cell,) = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert old in cell.source, cell.source
    cell.source = cell.source.replace(old, new)
    nbformat.write(book, notebook)


def status(root: Path) -> str:
    return ok(run(["git", "status", "--porcelain", "--untracked-files=all"], root)).stdout


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> Path:
    """A clone of the repository after a user's session in JupyterLab, at the state above."""
    top = run(["git", "rev-parse", "--show-toplevel"], ROOT)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip("not a git checkout (an sdist): there is no repository to clone")
    root = tmp_path_factory.mktemp("dirty") / "checkout"
    ok(run(["git", "clone", "--quiet", str(ROOT), str(root)], ROOT))
    # The tests and the lint target being developed, committed there as the user's starting point.
    shutil.rmtree(root / "tests")
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    git = ["git", "-c", "user.name=opslib tests", "-c", "user.email=tests@localhost"]
    git += ["-c", "commit.gpgsign=false"]
    ok(run([*git, "add", "tests", "Makefile"], root))
    commit = ["commit", "-q", "--no-verify", "--allow-empty", "-m", "tests under development"]
    ok(run([*git, *commit], root))
    (root / ".env").write_text("FX_API_KEY=not-a-real-key\n")
    notebooks = root / "notebooks"
    quickstart = notebooks / "00_quickstart.ipynb"
    # JupyterLab keeps a checkpoint of each notebook it opens, then saves it with its outputs.
    (notebooks / ".ipynb_checkpoints").mkdir()
    shutil.copy(quickstart, notebooks / ".ipynb_checkpoints" / "00_quickstart-checkpoint.ipynb")
    answer(quickstart, 'name = "my-job"', 'name = "fx-daily"')
    execute = [tool("jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace"]
    ok(run([*execute, quickstart.name], notebooks))
    assert any(cell.get("outputs") for cell in nbformat.read(quickstart, as_version=4).cells)
    assert (root / "parameters" / "fx-daily.yaml").is_file(), "the quick start's answers"
    step1 = notebooks / "01_write_function.ipynb"
    answer(step1, '"parameters/example.yaml"', '"parameters/fx-daily.yaml"')
    # Steps 1-2 of parameters/example.yaml in place, then the user's own edit of their job.
    for step in ("scaffold", "endpoint"):
        ok(run([tool("opslib"), step, "parameters/example.yaml"], root))
    module = root / "service" / "scripts" / "batch" / "fx_rates.py"
    module.write_text(module.read_text() + USER_EDIT)
    assert "/run-fx-rates" in (root / "service" / "batch_endpoint.py").read_text()
    assert (root / "service" / "tests" / "test_fx_rates.py").is_file()
    return root


def test_the_checkout_is_dirty_the_way_a_user_leaves_it(dirty):
    assert sorted(status(dirty).splitlines()) == [
        " M notebooks/00_quickstart.ipynb",
        " M notebooks/01_write_function.ipynb",
        " M service/batch_endpoint.py",
        "?? .env",
        "?? notebooks/.ipynb_checkpoints/00_quickstart-checkpoint.ipynb",
        "?? parameters/fx-daily.yaml",
        "?? service/scripts/batch/fx_rates.py",
        "?? service/tests/test_fx_rates.py",
    ]


def test_make_lint_and_the_sensitive_tests_pass_there(dirty):
    before = status(dirty)
    lint = run(["make", "-s", "lint", f"BIN={Path(tool('ruff')).parent}", "STAMP="], dirty)
    tests = pytest_in(dirty, *SENSITIVE)
    assert (lint.returncode, tests.returncode) == (0, 0), shown(lint) + shown(tests)
    assert status(dirty) == before, "the tests wrote into the checkout"


def test_a_staged_notebook_with_outputs_fails_the_outputs_check(dirty):
    ok(run(["git", "add", "notebooks/00_quickstart.ipynb"], dirty))
    try:
        result = pytest_in(dirty, "tests/test_notebooks.py::test_committed_without_outputs")
        assert result.returncode == 1, shown(result)
        assert "notebooks/00_quickstart.ipynb" in result.stdout, shown(result)
    finally:
        ok(run(["git", "reset", "--quiet", "notebooks/00_quickstart.ipynb"], dirty))
