"""The checks after step 2, on this machine, before anything is built: checklist, test, a call.

They catch a broken route or job in seconds instead of after a build and a deploy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pandas as pd

from opslib.core.errors import OpslibError
from opslib.core.humane import plain
from opslib.spec import rules as g
from opslib.spec.model import Spec
from opslib.steps.endpoint import lint as endpoint_lint
from opslib.steps.endpoint import patch as endpoint
from opslib.steps.endpoint import serve as localserve


def checklist(service_dir: Path) -> pd.DataFrame:
    """The endpoint checklist (every route, not only the new one); raises on any finding."""
    findings = endpoint_lint.lint(Path(service_dir))
    if len(findings):
        raise OpslibError(
            str(Path(service_dir) / endpoint.ENDPOINT_FILE),
            f"endpoint checklist:\n{findings.to_string(index=False)}",
            "fix the routes listed",
        )
    return findings


def unit_test(spec: Spec, service_dir: Path) -> str:
    """Run the job's generated test in the service copy; its pytest summary line.

    Without the plugins installed beside opslib (hypothesis's alone costs about 1.5 s to load):
    the container the job ships in has none of them, and the generated test needs none.
    Without colours: a kernel or CI may ask for them (FORCE_COLOR), and a notebook, `make demo`
    and a log show the escape codes as text.
    """
    test = f"tests/test_{spec.job.module}.py"
    pytest = [sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [*pytest, *_own_config(service_dir), test],
        cwd=service_dir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    out = plain(proc.stdout)
    last = out.strip().splitlines()[-1] if out.strip() else plain(proc.stderr)
    if proc.returncode != 0:
        raise OpslibError(
            str(Path(service_dir) / test),
            f"failed:\n{out[-3000:]}",
            "fix the job or its test",
        )
    return last


# pytest's own names for a configuration file, in the order it looks for them.
PYTEST_CONFIGS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _own_config(service_dir: Path) -> list[str]:
    """The folder's own pytest config, never one found above it: the folder ships alone, and the
    surrounding project's options (plugins the container lacks, warnings as errors) break it."""
    own = [Path(service_dir) / name for name in PYTEST_CONFIGS]
    config = next((str(path) for path in own if path.is_file()), os.devnull)
    return ["-c", config, "--rootdir", str(service_dir)]


def call_route(spec: Spec, service_dir: Path) -> str:
    """Serve the folder on a real gunicorn (TEST_MODE), call the route as Scheduler will."""
    return call_routes([spec], service_dir)[0]


def call_routes(specs: list[Spec], service_dir: Path) -> list[str]:
    """One gunicorn for the folder, each job's route called once; a Cloud Run job's task 0 run
    as its container will run it."""
    routed = [s for s in specs if s.job.effective_runtime == "service"]
    answers: dict[str, str] = {}
    if routed:
        with localserve.serving(Path(service_dir), env={"TEST_MODE": "1"}) as base:
            answers = {s.job.name: _call(base, s) for s in routed}
    return [answers.get(s.job.name) or run_task(s, Path(service_dir)) for s in specs]


def run_task(spec: Spec, service_dir: Path) -> str:
    """`python -m scripts.batch.<job>` as task 0 of the job's tasks (TEST_MODE), like Cloud Run."""
    count = spec.job.tasks
    env = {**os.environ, "TEST_MODE": "1", "CLOUD_RUN_TASK_INDEX": "0"}
    env |= {"CLOUD_RUN_TASK_COUNT": str(count), "CLOUD_RUN_JOB": spec.job.name}
    command = [sys.executable, "-m", f"scripts.batch.{spec.job.module}"]
    proc = subprocess.run(command, cwd=service_dir, capture_output=True, text=True, env=env)
    last = _last_status(proc.stdout)
    if proc.returncode != 0:
        raise OpslibError(
            " ".join(command[1:]),
            f"exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}",
            "read the job's error above and fix the job",
        )
    return f"task 0 of {count} -> {last.get('status')}: {last.get('message')}"


def _last_status(stdout: str) -> dict:
    """The task's closing JSON line (the one with a status)."""
    for line in reversed(stdout.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "status" in entry:
            return entry
    return {}


def _call(base: str, spec: Spec) -> str:
    body = spec.schedule.body_bytes if spec.schedule.http_method in g.BODY_METHODS else None
    request = Request(
        f"{base}{spec.job.route}",
        data=body,
        method=spec.schedule.http_method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except HTTPError as exc:
        raise OpslibError(
            f"{spec.schedule.http_method} {spec.job.route}",
            f"answered {exc.code}: {exc.read().decode(errors='replace')}",
            "read the job's error above and fix the job",
        ) from None
    return f"{spec.schedule.http_method} {spec.job.route} -> {answer['status']}: {answer['result']}"
