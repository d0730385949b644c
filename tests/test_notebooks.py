"""The notebooks as files: parameters declared, thin, no outputs, no swallowed exceptions.

papermill only warns about a parameter the notebook does not declare (and the run then uses
the default), so every key the runner or a parameters file passes is checked here. The runs
themselves are in test_run.py; here papermill also runs them the way users do by hand
(`-f parameters/NAME.yaml`), and the secrets notebook with a real .env.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import uuid
from pathlib import Path

import lc
import nbformat
import papermill
import pytest
import yaml

from conftest import ROOT, SERVICE, SHIPPED_PARAMS, git, indexed, tool
from opslib.fleet.load import open_fleet
from opslib.notebook import runner

NOTEBOOKS = ROOT / "notebooks"
STEP_NOTEBOOKS = sorted(
    p
    for p in NOTEBOOKS.glob("0*.ipynb")
    if p.name[:2] in {"01", "02", "03", "04", "05", "06", "07", "08"}
)
PARAMETER_FILES = SHIPPED_PARAMS  # not parameters/*: the quick start adds the user's own there
REQUIRED = [f"{n:02d}_" for n in range(9)]


def declared(notebook: Path) -> set[str]:
    return set(papermill.inspect_notebook(str(notebook)))


def code_cells(notebook: Path) -> list[str]:
    return [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]


def test_the_eight_notebooks_exist():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for prefix in REQUIRED:
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}*.ipynb: {names}"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_one_tagged_parameters_cell(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


@pytest.mark.parametrize("step", sorted(runner.STEPS))
def test_every_key_the_runner_passes_is_declared(step, tmp_path):
    fleet = open_fleet(list(SHIPPED_PARAMS))
    passed = set(runner.notebook_parameters(fleet, step, tmp_path))
    missing = passed - declared(NOTEBOOKS / f"{runner.STEPS[step]}.ipynb")
    assert not missing, f"{runner.STEPS[step]} does not declare {missing}"


@pytest.mark.parametrize("notebook", STEP_NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.parametrize("params", PARAMETER_FILES, ids=lambda p: p.stem)
def test_every_key_of_every_parameters_file_is_declared(notebook, params):
    """`papermill NB OUT -f parameters/NAME.yaml` passes each top-level key."""
    keys = set(yaml.safe_load(params.read_text()))
    assert not keys - declared(notebook)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_notebook_catches_exceptions(notebook):
    """A failing step must fail the run: no try/except, no suppress() in any code cell."""
    for source in code_cells(notebook):
        python = "\n".join(
            line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        tree = ast.parse(python)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Try | ast.TryStar)], source
        assert "suppress(" not in python, source


@pytest.mark.parametrize("notebook", STEP_NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_thin_calls_into_opslib(notebook):
    """Logic belongs in opslib, where it is tested; a notebook cell only calls it."""
    for source in code_cells(notebook):
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.While)], source


def committed_notebooks() -> dict[str, bytes]:
    """The notebooks as committed or staged (git's index), by path; the files themselves
    outside a git checkout. A notebook a user ran in JupyterLab and saved with its outputs
    stays theirs until they stage it."""
    listed = git("ls-files", "-z", "--", "notebooks")
    names = listed.stdout.decode().split("\0") if listed is not None else []
    books = {
        name: indexed(ROOT / name)
        for name in names
        if name.endswith(".ipynb") and Path(name).parent == Path("notebooks")
    }
    if not books:
        return {str(p.relative_to(ROOT)): p.read_bytes() for p in NOTEBOOKS.glob("*.ipynb")}
    return {name: text for name, text in sorted(books.items()) if text is not None}


def test_committed_without_outputs(tmp_path):
    books = committed_notebooks()
    assert len(books) >= len(REQUIRED), sorted(books)
    for name, text in books.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(text)
    result = subprocess.run(
        [tool("nbstripout"), "--verify", *books],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    shown = result.stdout + result.stderr
    assert result.returncode == 0, f"committed or staged with outputs (nbstripout FILE):\n{shown}"


def papermill_cli(notebook: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [tool("papermill"), str(NOTEBOOKS / notebook), str(out), "--no-progress-bar"]
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    return subprocess.run(
        [*command, "-k", "python3", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


def test_papermill_by_hand_with_a_parameters_file(tmp_path):
    """Steps 1-2 as a user runs them: `papermill NB OUT -f parameters/monthly-report.yaml`."""
    work = tmp_path / "ws" / "services" / "report-service"  # the spec's service_dir, copied
    in_repository = SERVICE / "scripts" / "batch" / "monthly_report.py"
    there = in_repository.exists()  # the user may have run these steps in place themselves
    for notebook in ("01_write_function.ipynb", "02_patch_endpoint.ipynb"):
        result = papermill_cli(
            notebook,
            tmp_path / notebook,
            "-f",
            str(ROOT / "parameters" / "monthly-report.yaml"),
            "-p",
            "workspace",
            str(tmp_path / "ws"),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "unknown parameter" not in result.stderr
    assert (work / "scripts" / "batch" / "monthly_report.py").is_file()
    assert "/run-monthly-report" in (work / "batch_endpoint.py").read_text()
    assert in_repository.exists() is there, "the repository's service/ is never written"


def _shown(notebook: Path) -> str:
    return "\n".join(
        o.get("data", {}).get("text/plain", "") + o.get("text", "")
        for c in nbformat.read(notebook, as_version=4).cells
        for o in c.get("outputs", [])
    )


def test_secrets_notebook_imports_a_dotenv_and_never_shows_a_value(tmp_path):
    token = uuid.uuid4().hex
    secret_key = f"NB_KEY_{token[:8].upper()}"
    value = f"v4lue-{token}-$HOME 'quoted'"
    dotenv = tmp_path / ".env"
    dotenv.write_text(f'# values for the notebook test\n{secret_key}="{value}"\nOTHER=skip\n')
    secret_id = secret_key.lower().replace("_", "-")
    params = tmp_path / "params.yaml"
    data = yaml.safe_load((ROOT / "parameters" / "example.yaml").read_text())
    data["secrets"] = {secret_key: f"{secret_id}:latest"}
    params.write_text(yaml.safe_dump(data))
    args = [
        "-p",
        "params",
        str(params),
        "-p",
        "env_file",
        str(dotenv),
        "-y",
        f"keys: [{secret_key}]",
    ]

    first = papermill_cli("06_secrets.ipynb", tmp_path / "first.ipynb", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    shown = _shown(tmp_path / "first.ipynb")
    assert re.search(rf"secret {secret_id}\s+create", shown), shown
    assert re.search(rf"secret {secret_id} version\s+create", shown), shown
    assert re.search(rf"{secret_key}\s+{secret_id}\s+latest\s+ENABLED\s+True", shown), shown

    again = papermill_cli("06_secrets.ipynb", tmp_path / "again.ipynb", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(rf"secret {secret_id} version\s+no change", _shown(tmp_path / "again.ipynb"))
    for out in ("first.ipynb", "again.ipynb"):
        text = (tmp_path / out).read_text()
        assert token not in text, f"the secret value leaked into {out}"
    assert token not in first.stdout + first.stderr + again.stdout + again.stderr
