"""Step 5's verdict outside the notebook: kept as JSON for the runner, and the pass/fail gate."""

from __future__ import annotations

import json
from pathlib import Path

from opslib import verify
from opslib.errors import OpslibError
from opslib.verify import Verdict


def save(verdict: Verdict, path: str | Path | None) -> None:
    """Keep the checks and the verdict where the runner reads them (no-op without a path)."""
    if path is None:
        return
    data = {
        "passed": verdict.passed,
        "attempt": verdict.attempt,
        "checks": verdict.checks.to_dict(orient="records"),
        "log_lines": len(verdict.logs),
    }
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def require_passed(verdict: Verdict) -> None:
    """Raise unless verify passed, so a notebook run (and `opslib run`) fails with the cause."""
    if verdict.passed:
        return
    failed = verdict.checks[~verdict.checks["ok"]]
    lines = verify.error_lines(verdict)
    detail = failed.to_string(index=False)
    if len(lines):
        detail += "\nerror lines of the run:\n" + lines[["timestamp", "message"]].to_string(
            index=False
        )
    if len(verdict.findings):
        from opslib import doctor

        problems = doctor.problems(verdict.findings)
        if len(problems):
            detail += "\nwhat the doctor found:\n" + doctor.render(problems)
    raise OpslibError(
        "verify",
        f"the run did not pass ({verdict.attempt}):\n{detail}",
        "follow the fix in the failed check; `opslib doctor PARAMS.yaml` diagnoses it",
    )
