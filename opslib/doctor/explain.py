"""The doctor on a failed step 5: its findings on the verdict, and the pass/fail gate.

Step 5 (`opslib.steps.verify`) judges one run; when it fails, this module asks the doctor why
(the last day of logs, this run included), names the cause on the failed check (a route's 404;
a Cloud Run job's refused `:run` call or its failed tasks), and raises with the failed checks,
the run's error lines and the doctor's problems.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from opslib.cloud.session import Session
from opslib.core.errors import OpslibError
from opslib.doctor import diagnose as doctor
from opslib.doctor.checks import AUTH_CODES, RUN_JOB_CHECK
from opslib.doctor.jobs import TASKS
from opslib.steps import verify as verify_step
from opslib.steps.verify import Verdict


def verify(session: Session, progress: bool = True) -> Verdict:
    """Step 5, and on failure the doctor's findings (the doctor reads more than verify needs)."""
    spec = session.spec
    verdict = verify_step.verify(spec, session.clients, progress)
    if not verdict.passed:
        verdict.findings = diagnose_failure(session)
        if spec.job.effective_runtime == "job":
            name_job_cause(verdict)
        else:
            name_cause(verdict)
    return verdict


def diagnose_failure(session: Session) -> pd.DataFrame:
    """The doctor's findings for a failed run (the last day of logs, this run included)."""
    return doctor.diagnose(session, since=timedelta(hours=24))


def name_cause(verdict: Verdict) -> None:
    """A 404's check quotes the doctor's route finding: what is missing, and the command."""
    if verdict.attempt == "NOT_FOUND":
        _quote(verdict, "scheduler attempt", "route")


def name_job_cause(verdict: Verdict) -> None:
    """A Cloud Run job's refused `:run` quotes the doctor's auth or job finding; its failed
    tasks quote the tasks finding (or the one it points to, such as the task timeout)."""
    if verdict.attempt != "OK":
        cause = "auth" if verdict.attempt in AUTH_CODES else RUN_JOB_CHECK
        _quote(verdict, "scheduler attempt", cause)
    elif not verdict.checks[verdict.checks["check"] == "failed tasks"]["ok"].all():
        _quote(verdict, "failed tasks", TASKS, keep=True)


def _quote(verdict: Verdict, row: str, check: str, keep: bool = False) -> None:
    """Verify's `row` says what the doctor's `check` found (`keep`: after what it said) and
    its fix; a fix that only points at another finding ("see [task timeout] ...") is followed
    to that one's."""
    findings = verdict.findings
    if findings.empty:
        return
    raised = findings[findings["severity"] != "ok"]
    found = raised[raised["check"] == check]
    if found.empty:
        return
    cause = found.iloc[0]
    fix = cause["fix"]
    if fix.startswith("see ["):
        pointed = raised[raised["check"] == fix[len("see [") :].split("]", 1)[0]]
        fix = pointed.iloc[0]["fix"] if len(pointed) else fix
    where = verdict.checks["check"] == row
    said = verdict.checks.loc[where, "value"].iloc[0] if keep else verdict.attempt
    verdict.checks.loc[where, "value"] = (
        f"{said}; fix: {fix}" if keep else f"{said}: {cause['finding']}; fix: {fix}"
    )


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
