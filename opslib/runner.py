"""`opslib run`: take one automation through its steps, on a working copy of the service.

The committed `service/` is never edited: a run works on `runs/<name>/service`, copied once
and reused, so a second run with the same spec plans no change. Steps 1-2 run here today; after
them the run checks the endpoint, runs the generated unit test and calls the new route on a
real gunicorn. (Steps 3-5 come with localcloud.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pandas as pd

from opslib import endpoint, endpoint_lint, localserve, scaffold
from opslib import gcp_rules as g
from opslib.errors import OpslibError
from opslib.plan import Plan
from opslib.spec import Spec
from opslib.spec_loader import load_spec

COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


@dataclass
class StepResult:
    """How one step of a run ended, for the summary table."""

    step: str
    status: str
    seconds: float
    output: object = None


def prepare_workdir(spec_path: Path, source: Path, runs: Path, *, fresh: bool = False) -> Path:
    """runs/<name>/service: a copy of `source`, made once (or again with `fresh`)."""
    target = runs / spec_path.stem / "service"
    if fresh and target.exists():
        shutil.rmtree(target)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target, ignore=COPY_IGNORE)
    return target


def run(
    spec_path: Path,
    *,
    source: Path = Path("service"),
    runs: Path = Path("runs"),
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    results: list[StepResult] | None = None,
) -> list[StepResult]:
    """Run steps 1-2 and their checks; `results` fills as steps end, so a failure keeps them."""
    results = [] if results is None else results
    spec = load_spec(spec_path)
    service_dir = prepare_workdir(spec_path, source, runs, fresh=fresh)
    echo(f"service copy: {service_dir}")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("1 write function", lambda: scaffold.scaffold(spec, service_dir, keep_edited=True)),
        ("2 patch endpoint", lambda: endpoint.patch_endpoint(spec, service_dir)),
        ("2 endpoint checklist", lambda: _checklist(service_dir)),
        ("job unit test", lambda: _unit_test(spec, service_dir)),
        ("call route locally", lambda: _call_route(spec, service_dir)),
    ]
    for name, action in steps:
        started = time.perf_counter()
        try:
            output = action()
        except Exception:
            results.append(StepResult(name, "failed", time.perf_counter() - started))
            raise
        results.append(StepResult(name, "ok", time.perf_counter() - started, output))
        _show(echo, name, output)
    return results


def _show(echo: Callable[[str], None], name: str, output: object) -> None:
    if isinstance(output, Plan):
        output = output.to_frame()
    if isinstance(output, pd.DataFrame):
        echo(f"\n[{name}]\n{output.to_string(index=False) if len(output) else '(nothing)'}")
    elif output:
        echo(f"\n[{name}]\n{output}")


def _checklist(service_dir: Path) -> pd.DataFrame:
    findings = endpoint_lint.lint(service_dir)
    if len(findings):
        raise OpslibError(
            str(service_dir / endpoint.ENDPOINT_FILE),
            f"endpoint checklist:\n{findings.to_string(index=False)}",
            "fix the routes listed",
        )
    return findings


def _unit_test(spec: Spec, service_dir: Path) -> str:
    test = f"tests/test_{spec.job.module}.py"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=service_dir,
        capture_output=True,
        text=True,
    )
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    if proc.returncode != 0:
        raise OpslibError(
            str(service_dir / test), f"failed:\n{proc.stdout[-3000:]}", "fix the job or its test"
        )
    return last


def _call_route(spec: Spec, service_dir: Path) -> str:
    with localserve.serving(service_dir, env={"TEST_MODE": "1"}) as base:
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


def summary_frame(results: list[StepResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [(r.step, r.status, round(r.seconds, 2)) for r in results],
        columns=["step", "status", "seconds"],
    )
