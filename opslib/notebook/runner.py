"""`opslib run`: the five step notebooks, executed headlessly by papermill, one after another.

The notebooks are the product (users read and run them in JupyterLab); the runner runs the very
same files with the parameters files given, one or many: each notebook gets them all, so steps
1-2 write every job into its service's folder, step 3 deploys each service once, steps 4-5
schedule and verify each job. Each executed notebook is kept under `runs/<job>/<UTC time>/`
(`runs/fleet/<UTC time>/` for several) with a `summary.json`; a failed step stops the run and
its notebook shows the failing cell. The steps write the project's own service folders (what
the user commits), or with `workspace` copies of them made once under that folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from opslib.cloud.session import ensure_localcloud
from opslib.core.errors import BadInput, OpslibError
from opslib.core.humane import plain
from opslib.fleet.load import Fleet, open_fleet

if TYPE_CHECKING:
    from opslib.notebook.kernel import WarmKernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STEPS = {
    1: "01_write_function",
    2: "02_patch_endpoint",
    3: "03_deploy",
    4: "04_schedule",
    5: "05_verify",
}
VERIFY_REPORT = "verify.json"
_STEPS_SYNTAX = re.compile(r"\d(-\d)?(,\d(-\d)?)*")


@dataclass
class StepResult:
    """How one step notebook ended, for the table and summary.json."""

    step: int
    notebook: str
    status: str
    seconds: float
    output: str


def parse_steps(text: str) -> list[int]:
    """'1-5', '3', '1-3,5' -> sorted step numbers; anything else is a clear error."""
    text = str(text).replace(" ", "")
    fix = "pass --steps as a number or range of 1-5, e.g. --steps 1-5, --steps 3 or --steps 1-2,4"
    if not _STEPS_SYNTAX.fullmatch(text):
        raise BadInput("--steps", f"{text!r} is not a step list", fix)
    chosen: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high or low not in STEPS or high not in STEPS:
            raise BadInput("--steps", f"{part!r} is outside steps 1-5 or runs backwards", fix)
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def notebook_parameters(fleet: Fleet, step: int, out_dir: Path) -> dict[str, object]:
    """What the runner passes a step notebook (each declares these in its parameters cell)."""
    files = [str(s.params) for s in fleet.sessions]
    first = fleet.sessions[0]
    parameters: dict[str, object] = {
        "params": files[0] if len(files) == 1 else files,
        "target": first.spec.target,
        "workspace": str(first.workspace) if first.workspace else None,
        "progress": False,
    }
    if step == 5:
        parameters["report"] = str(out_dir / VERIFY_REPORT)
    return parameters


def run(
    params: Path | list[Path],
    *,
    steps: str = "1-5",
    target: str | None = None,
    runs: Path | None = None,
    workspace: Path | None = None,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    results: list[StepResult] | None = None,
) -> list[StepResult]:
    """Run the chosen steps' notebooks; raises on the first failure (`results` keeps the rest)."""
    results = [] if results is None else results
    chosen = parse_steps(steps)
    # Every spec and the rules between them are checked before anything is written.
    files = [params] if isinstance(params, str | Path) else params
    fleet = open_fleet(files, target, None, workspace)
    _import_papermill()
    from opslib.notebook.kernel import WarmKernel

    # The kernel starts (and imports opslib's step modules) while localcloud answers.
    kernel = WarmKernel(fleet.sessions[0].root)
    try:
        # What a notebook raised may carry IPython's colours: a terminal or CI log shows text.
        return _run(fleet, chosen, kernel, runs, fresh, lambda t: echo(plain(t)), results)
    finally:
        kernel.close()


def _run(
    fleet: Fleet,
    chosen: list[int],
    kernel: WarmKernel,
    runs: Path | None,
    fresh: bool,
    echo: Callable[[str], None],
    results: list[StepResult],
) -> list[StepResult]:
    first = fleet.sessions[0]
    if first.workspace is not None:
        echo(f"workspace:    {first.workspace} (copies of the project's service folders)")
    folders = fleet.ensure_service_dirs(fresh=fresh)
    if first.spec.target == "local" and any(step >= 3 for step in chosen):
        given = "OPSLIB_LOCALCLOUD_URL" in os.environ
        url = ensure_localcloud(first.localcloud_state)
        # The kernel started before localcloud answered: it is told the URL at each reset.
        kernel.environment["OPSLIB_LOCALCLOUD_URL"] = url
        echo(
            f"localcloud: {url}"
            if given
            else f"localcloud: {url} (it keeps running, so the job fires on its cron; "
            f"stop it with: opslib localcloud stop --state {first.localcloud_state})"
        )
    out_dir = _output_dir(fleet, runs)
    shown = "\n              ".join(str(f) for f in folders)
    echo(f"service dirs: {shown}\nnotebooks:    {out_dir}")
    started = datetime.now(UTC)
    try:
        for step in chosen:
            results.append(_execute(step, fleet, kernel, out_dir, echo))
            if results[-1].status != "ok":
                raise OpslibError(
                    f"step {step} ({STEPS[step]})",
                    "failed; the executed notebook shows the failing cell",
                    f"open {results[-1].output}",
                )
    finally:
        _write_summary(out_dir, fleet, started, chosen, results)
    return results


def _output_dir(fleet: Fleet, runs: Path | None) -> Path:
    first = fleet.sessions[0]
    base = Path(runs) if runs is not None else first.root / "runs"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = first.spec.job.name if len(fleet.sessions) == 1 else "fleet"
    out = (base / name / stamp).resolve()
    out.mkdir(parents=True, exist_ok=False)
    return out


def _import_papermill() -> None:
    """papermill, without the 2-3 s that jsonschema spends importing rfc3987_syntax.

    jsonschema imports rfc3987_syntax eagerly for its `iri` format checks, which builds about
    35 Earley parsers at import (python-jsonschema/jsonschema#1428); it is installed beside
    JupyterLab. No notebook schema uses that format, and jsonschema skips the checker when the
    import fails, so the runner blocks it before nbformat loads jsonschema.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill  # noqa: F401


def _execute(
    step: int,
    fleet: Fleet,
    kernel: WarmKernel,
    out_dir: Path,
    echo: Callable[[str], None],
) -> StepResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = STEPS[step]
    output = out_dir / f"{name}.ipynb"
    started = time.perf_counter()
    status = "ok"
    kernel.reset()
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS / f"{name}.ipynb"),
            str(output),
            parameters=notebook_parameters(fleet, step, out_dir),
            kernel_name="python3",
            progress_bar=False,
            cwd=str(fleet.sessions[0].root),
            **kernel.engine_kwargs(),
        )
    except PapermillExecutionError as exc:
        status = "failed"
        echo(f"\nstep {step} failed in cell {exc.exec_count}: {exc.ename}: {_lines(exc)}")
    except Exception as exc:  # the kernel died, a cell timed out: still this step's failure
        status = "failed"
        echo(f"\nstep {step} failed: {type(exc).__name__}: {_lines(exc)}")
    seconds = time.perf_counter() - started
    echo(f"step {step} {name}: {status} ({seconds:.1f}s)")
    return StepResult(step, name, status, round(seconds, 2), str(output))


def _lines(exc: Exception, count: int = 8) -> str:
    """The start of the error's message: enough to see the cause without the notebook."""
    value = str(getattr(exc, "evalue", "") or exc).strip()
    lines = value.splitlines()
    more = "\n  ... (the rest in the step's notebook)" if len(lines) > count else ""
    return "\n".join(lines[:count]) + more


def _write_summary(
    out_dir: Path,
    fleet: Fleet,
    started: datetime,
    chosen: list[int],
    results: list[StepResult],
) -> None:
    verdicts = _verdicts(results)
    summary = {
        "params": [str(s.params) for s in fleet.sessions],
        "automations": [s.spec.job.name for s in fleet.sessions],
        "target": fleet.sessions[0].spec.target,
        "time_zone": fleet.time_zone,  # the clock the run's verdict is told on
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "steps": [asdict(r) for r in with_not_run(results, chosen)],
        "jobs": jobs_rows(fleet, results, chosen),
        "verify_passed": _verified(results) if 5 in chosen else None,
        "passed": all(r.status == "ok" for r in results) and len(results) == len(chosen),
    }
    if verdicts is not None:
        summary["verify"] = {job: v["passed"] for job, v in verdicts.items()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _verified(results: list[StepResult]) -> bool:
    """Notebook 05 raises when verify fails, so verify passed exactly when step 5 ran ok."""
    return any(r.step == 5 and r.status == "ok" for r in results)


def _verdicts(results: list[StepResult]) -> dict[str, dict] | None:
    """Each job's verdict as notebook 05 saved it, when step 5 ran far enough to save it."""
    for result in results:
        report = Path(result.output).parent / VERIFY_REPORT
        if result.step == 5 and report.exists():
            return json.loads(report.read_text())["jobs"]
    return None


def _summary(results: list[StepResult]) -> dict | None:
    """The run's summary.json, once written."""
    for result in results:
        summary = Path(result.output).parent / "summary.json"
        if result.output and summary.exists():
            return json.loads(summary.read_text())
    return None


def jobs_frame(results: list[StepResult]) -> pd.DataFrame | None:
    """The per-job table of the run's summary.json (one row per automation)."""
    summary = _summary(results)
    return pd.DataFrame(summary["jobs"]) if summary is not None else None


def time_zone(results: list[StepResult]) -> str | None:
    """The fleet's zone, which the run's verdict is told in (Fleet.time_zone)."""
    summary = _summary(results)
    return summary.get("time_zone") if summary is not None else None


def verify_checks(results: list[StepResult]) -> pd.DataFrame | None:
    """Step 5's checks table (a `job` column first) as notebook 05 saved it."""
    verdicts = _verdicts(results)
    if verdicts is None:
        return None
    rows = [{"job": job, **check} for job, v in verdicts.items() for check in v["checks"]]
    return pd.DataFrame(rows)


def jobs_rows(fleet: Fleet, results: list[StepResult], chosen: list[int]) -> list[dict]:
    """One row per automation: its service, how far the steps went, and its verify verdict."""
    ran = [r for r in results if r.status == "ok"]
    failed = next((r for r in results if r.status != "ok"), None)
    verdicts = _verdicts(results) or {}
    rows = []
    for s in fleet.sessions:
        job = s.spec.job.name
        if job in verdicts:
            verdict = "PASSED" if verdicts[job]["passed"] else "FAILED"
        else:
            verdict = "not run" if 5 in chosen else "-"
        steps = ",".join(str(r.step) for r in ran) or "-"
        state = f"ok {steps}" + (f", step {failed.step} failed" if failed else "")
        rows.append({"job": job, "service": s.spec.service, "steps": state, "verify": verdict})
    return rows


def with_not_run(results: list[StepResult], chosen: list[int]) -> list[StepResult]:
    """The steps that ran, then the chosen ones a failure stopped before they started."""
    ran = {r.step for r in results}
    return results + [StepResult(s, STEPS[s], "not run", 0.0, "") for s in chosen if s not in ran]


def summary_frame(results: list[StepResult], chosen: list[int] | None = None) -> pd.DataFrame:
    """step, status, seconds: the table the CLI prints at the end."""
    rows = [(r.step, r.notebook, r.status, r.seconds) for r in with_not_run(results, chosen or [])]
    return pd.DataFrame(rows, columns=["step", "notebook", "status", "seconds"])
