"""Crash-safe (issue 24): localcloud killed with SIGKILL in the middle of a step, started again on
the same state, and one more `opslib run` of the same file finishes the work, with no manual step
and no process of the dead server left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

import lc
import pytest
import yaml
from project import add_params, make_project

from conftest import tool
from opslib.localcloud import control
from opslib.localcloud.children import RECORD, start_time


def _env() -> dict[str, str]:
    """No localcloud handed in: opslib finds the project's own (.localcloud in its root)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OPSLIB_LOCALCLOUD")}


def _state(state: Path, name: str) -> dict:
    try:
        return json.loads((state / f"{name}.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def building(state: Path) -> bool:
    return any(
        b["status"] == "WORKING" for b in _state(state, "cloudbuild").get("builds", {}).values()
    )


def running_under(state: Path) -> dict[int, str]:
    """The processes that run in a folder of `state` (instances run in their image's folder),
    by pid with their start time: found without localcloud's own record of them."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue
            start = start_time(int(entry.name))
            if cwd.is_relative_to(state) and start:
                found[int(entry.name)] = start
    return found


def deploying(state: Path) -> bool:
    """A revision is starting and its instance's process runs (so the kill leaves an orphan)."""
    revisions = _state(state, "run").get("revisions", {}).values()
    return any(r.get("reconciling") for r in revisions) and bool(running_under(state))


PHASES: dict[str, Callable[[Path], bool]] = {"build": building, "deploy": deploying}
# Where the kill happens, and who stops what the dead server left: its next start, or
# `opslib localcloud stop` before it.
CASES = [("build", "start"), ("deploy", "start"), ("deploy", "stop")]


def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def alive(pid: int, start: str) -> bool:
    return start_time(pid) == start


@pytest.mark.parametrize(("phase", "cleanup"), CASES)
def test_localcloud_killed_in_the_middle_of_a_step_heals_on_the_next_run(tmp_path, phase, cleanup):
    root = make_project(tmp_path / "project")
    name = lc.unique(f"crash-{phase}")
    add_params(root, "a", service=name, job={"name": name}, deploy={"min_instances": 0})
    state = root / ".localcloud"
    server = control.start(state, port=0)
    command = [tool("opslib"), "run", "parameters/a.yaml"]
    try:
        first = subprocess.Popen(
            command, cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            assert wait_until(lambda: PHASES[phase](state), 180), f"never reached the {phase}"
            left = running_under(state)
            os.kill(server.pid, signal.SIGKILL)
            output = first.communicate(timeout=180)[0].decode()
        finally:
            first.kill()
            first.wait()
        assert first.returncode != 0, output
        if phase == "deploy":
            assert left and any(alive(pid, start) for pid, start in left.items()), "no orphan"
        if cleanup == "stop":
            # `opslib localcloud stop` stops what the killed server left, and says so.
            stop = [tool("opslib"), "localcloud", "stop"]
            stopped = subprocess.run(stop, cwd=root, env=_env(), capture_output=True, text=True)
            assert "left running by a localcloud that was killed" in stopped.stdout, stopped
            assert not [pid for pid, start in left.items() if alive(pid, start)], "stop kept them"

        restarted = control.start(state, port=0)
        if phase == "deploy":  # said as Google says it: failed, with why; not reconciling
            spec = yaml.safe_load((root / "parameters" / "a.yaml").read_text())
            path = f"/v2/projects/{spec['project']}/locations/{spec['region']}/services/{name}"
            with urlopen(restarted.url + path, timeout=30) as answer:
                condition = json.loads(answer.read())["terminalCondition"]
            assert condition["state"] == "CONDITION_FAILED", condition
            assert "localcloud stopped before the operation finished" in condition["message"]
            doctor = [tool("opslib"), "doctor", "parameters/a.yaml"]
            told = subprocess.run(doctor, cwd=root, env=_env(), capture_output=True, text=True)
            assert told.returncode == 1 and "failed to start" in told.stdout, told.stdout
            assert "has no ready revision" in told.stdout, "the service is not called ready"
            pointed = set(re.findall(r"see \[([^\]]+)\]", told.stdout))
            raised = set(re.findall(r"^(?:ERROR|WARNING)\s+\[([^\]]+)\]", told.stdout, re.M))
            assert pointed <= raised, f"a fix points at a finding not shown: {pointed - raised}"
            assert "opslib deploy parameters/a.yaml" in told.stdout, "the repair, as typed"
        assert not [pid for pid, start in left.items() if alive(pid, start)], "orphans kept"
        assert not set(_state(state, "children")) & {str(pid) for pid in left}, "still recorded"

        again = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]  # step 5 too
    finally:
        control.stop(state)
    assert not (state / RECORD).exists() or _state(state, "children") == {}
