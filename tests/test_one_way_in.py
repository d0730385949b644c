"""One way in: every command finds the same project, files and localcloud from any folder.

A project in a temporary folder, with no localcloud running and no OPSLIB_LOCALCLOUD_URL: the
first command (steps 1-4, typed in `service/`) starts the project's own localcloud on demand
(state in `<root>/.localcloud`). Then every CLI command runs from the project root, `service/`,
`notebooks/` and a subfolder, with the parameters file as a shell user types it from there,
and must give the same exit code and the same answer (times, run ids and counts aside).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import lc
import pytest
from project import add_params, make_project

from conftest import tool
from opslib.localcloud import control

PLACES = ("", "service", "notebooks", "service/scripts")
# Each command (after `opslib`), PARAMS standing for the file as typed from the place.
COMMANDS = {
    "check": ["check", "PARAMS"],
    "scaffold": ["scaffold", "PARAMS", "--dry-run"],
    "endpoint": ["endpoint", "PARAMS", "--dry-run"],
    "deploy": ["deploy", "PARAMS", "--dry-run"],
    "schedule": ["schedule", "PARAMS", "--dry-run"],
    "secrets": ["secrets", "check", "PARAMS"],
    "destroy": ["destroy", "PARAMS", "--dry-run"],
    "verify": ["verify", "PARAMS", "--quiet"],
    "logs": ["logs", "PARAMS", "--since", "1h"],
    "doctor": ["doctor", "PARAMS"],
    "status": ["status", "PARAMS"],
    "localcloud status": ["localcloud", "status"],
    "run step 4": ["run", "PARAMS", "--steps", "4"],
}
VOLATILE = [
    (
        re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?(\.\d+)?([+-]\d\d:\d\d| [A-Z]{3,4}|Z)?"),
        "T",
    ),
    (re.compile(r"\b[0-9a-f]{12,32}\b"), "ID"),  # run ids, insert ids
    (re.compile(r"\d+(\.\d+)?\s?(ms|s)\b"), "D"),  # durations
    (re.compile(r"\b\d+\b"), "N"),  # counts that grow as the job runs again
    (re.compile(r"[ \t]+"), " "),  # columns widen with longer values
    (re.compile(r"/tmp/\S+/runs/\S+"), "RUNS"),  # each run's own folder
]


def _env(root: Path) -> dict[str, str]:
    """No localcloud handed in: each command must find the project's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLIB_LOCALCLOUD")}
    return env


def opslib(root: Path, place: str, words: list[str]) -> subprocess.CompletedProcess:
    cwd = root / place
    params = os.path.relpath(root / "parameters" / "a.yaml", cwd)
    args = [params if w == "PARAMS" else w for w in words]
    return subprocess.run(
        [tool("opslib"), *args], cwd=cwd, env=_env(root), capture_output=True, text=True
    )


def normal(text: str, root: Path, place: str) -> str:
    cwd = root / place
    for form in (os.path.relpath(root / "parameters" / "a.yaml", cwd), "parameters/a.yaml"):
        text = text.replace(form, "PARAMS")  # as typed from here, or from the project root
    for pattern, word in VOLATILE:
        text = pattern.sub(word, text)
    return text.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    root = make_project(tmp_path_factory.mktemp("way-in") / "project")
    (root / "notebooks").mkdir()
    add_params(
        root,
        "a",
        service=lc.unique("way-in"),
        job={"name": lc.unique("way-in")},
        deploy={"min_instances": 0},
    )
    state = root / ".localcloud"
    try:
        first = opslib(root, "service", ["run", "PARAMS", "--steps", "1-4"])
        assert first.returncode == 0, first.stdout + first.stderr
        assert control.read(state) is not None, "started on demand, in the project's root"
        yield root
    finally:
        stopped = opslib(root, "notebooks", ["localcloud", "stop"])
        control.stop(state)  # in case the command did not
        assert stopped.returncode == 0 and "localcloud stopped" in stopped.stdout, stopped


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_gives_the_same_answer_from_every_folder(project, name):
    results = {place: opslib(project, place, COMMANDS[name]) for place in PLACES}
    codes = {place: r.returncode for place, r in results.items()}
    assert set(codes.values()) == {0}, {p: r.stdout + r.stderr for p, r in results.items()}
    answers = {place: normal(r.stdout, project, place) for place, r in results.items()}
    first = answers[""]
    for place, answer in answers.items():
        assert answer == first, f"{name} from {place or 'the root'}:\n{answer}\n---\n{first}"


def test_a_path_from_the_project_root_works_in_a_subfolder(project):
    """A notebook's habit: `parameters/a.yaml` typed inside notebooks/ is found from the root."""
    done = subprocess.run(
        [tool("opslib"), "check", "parameters/a.yaml"],
        cwd=project / "notebooks",
        env=_env(project),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
