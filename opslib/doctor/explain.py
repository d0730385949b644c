"""The doctor on a failed step 5: its findings on the verdict, and the pass/fail gate.

Step 5 (`opslib.steps.verify`) judges one run; when it fails, this module asks the doctor why
(the last day of logs, this run included), names a 404's cause on the attempt's check, and
raises with the failed checks, the run's error lines and the doctor's problems.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from opslib.cloud.session import Session
from opslib.core.errors import OpslibError
from opslib.doctor import diagnose as doctor
from opslib.steps.verify import service as verify_step
from opslib.steps.verify.service import Verdict


def verify(session: Session, progress: bool = True) -> Verdict:
    """Step 5, and on failure the doctor's findings (the doctor reads more than verify needs)."""
    spec = session.spec
    verdict = verify_step.verify(spec, session.clients, progress)
    if not verdict.passed:
        verdict.findings = diagnose_failure(session)
        if spec.job.effective_runtime != "job":
            name_cause(verdict)
    return verdict


def diagnose_failure(session: Session) -> pd.DataFrame:
    """The doctor's findings for a failed run (the last day of logs, this run included)."""
    return doctor.diagnose(session, since=timedelta(hours=24))


def name_cause(verdict: Verdict) -> None:
    """A 404's check quotes the doctor's route finding: what is missing, and the command."""
    findings = verdict.findings
    if verdict.attempt != "NOT_FOUND" or findings.empty:
        return
    route = findings[(findings["check"] == "route") & (findings["severity"] != "ok")]
    if route.empty:
        return
    row = route.iloc[0]
    attempt = verdict.checks["check"] == "scheduler attempt"
    verdict.checks.loc[attempt, "value"] = f"NOT_FOUND: {row['finding']}; fix: {row['fix']}"


def require_passed(verdict: Verdict) -> None:
    """Raise unless verify passed, so a notebook run (and `opslib run`) fails with the cause."""
    if verdict.passed:
        return
    failed = verdict.checks[~verdict.checks["ok"]]
    lines = verify_step.error_lines(verdict)
    detail = failed.to_string(index=False)
    if len(lines):
        detail += "\nerror lines of the run:\n" + lines[["timestamp", "message"]].to_string(
            index=False
        )
    if len(verdict.findings):
        problems = doctor.problems(verdict.findings)
        if len(problems):
            detail += "\nwhat the doctor found:\n" + doctor.render(problems)
    raise OpslibError(
        "verify",
        f"the run did not pass ({verdict.attempt}):\n{detail}",
        "follow the fix in the failed check; `opslib doctor PARAMS.yaml` diagnoses it",
    )
