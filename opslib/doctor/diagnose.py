"""Troubleshooting: what is wrong with *this* automation, from its spec, live config and logs.

The seed's troubleshooting list (504 Gateway Timeout, cold-start failures, 429 rate limits, the
log queries) leaves users to guess which applies. `diagnose` reads where the work runs (a route
job: the live service, its revisions and the routes each serves; a Cloud Run job: the job, its
newest executions and their failed tasks), its IAM policy, the Scheduler job and one window of
logs (Scheduler attempts, Cloud Run request logs, the work's own structured lines) and runs the
checks of that runtime on them (`CHECKS`). The answer is a DataFrame, worst first: severity,
the check, what is wrong, the evidence (log lines, timings, config values) and the fix (the
spec key to change and to what, or the code pattern to use, or the command to run).
Checks that found nothing wrong stay in the table as `ok` rows saying what they looked at. A
symptom (the job's attempts fail) points at its cause's finding, never at itself.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from opslib.core.display import Banner

from opslib.cloud.session import Session
from opslib.doctor.auth import check_auth, check_job_auth
from opslib.doctor.calls import check_job_errors, check_rate_limits
from opslib.doctor.checks import SEVERITIES, Finding, check_job, when
from opslib.doctor.facts import LOG_LIMIT, Facts, gather
from opslib.doctor.jobs import check_cloud_run_job, check_task_timeout, check_tasks
from opslib.doctor.overlap import check_execution_overlap, check_overlap
from opslib.doctor.routes import check_routes
from opslib.doctor.service import check_revision, check_service
from opslib.doctor.timing import check_chain, check_cold_start, check_deadline
from opslib.spec.model import Spec
from opslib.spec.project import typed
from opslib.steps.logs import resource_clause

COLUMNS = ("severity", "check", "finding", "evidence", "fix")
Check = Callable[[Facts], list[Finding]]
# The checks of each runtime (`job.runtime`), in the order the table lists them. A route job:
# the service, its revision and the route, Scheduler's OIDC call and its deadline chain, cold
# starts, the route's errors and its lease. A Cloud Run job: the job, Scheduler's OAuth call
# of jobs:run, the tasks, their timeout, executions that skipped or overlapped. Both: the
# Scheduler job and the work's calls to external APIs (429s).
CHECKS: dict[str, tuple[Check, ...]] = {
    "service": (
        check_service,
        check_revision,
        check_routes,
        check_job,
        check_auth,
        check_deadline,
        check_chain,
        check_cold_start,
        check_rate_limits,
        check_job_errors,
        check_overlap,
    ),
    "job": (
        check_cloud_run_job,
        check_job,
        check_job_auth,
        check_tasks,
        check_task_timeout,
        check_rate_limits,
        check_execution_overlap,
    ),
}
UNREAD = ("logs", "iam", "revision", "revisions", "executions", "tasks")  # a row says so


def _coverage(facts: Facts) -> list[Finding]:
    """Say so when the log read stopped at its limit: the checks then saw a shorter window."""
    entries = facts.entries
    if len(entries) < LOG_LIMIT:
        return []
    oldest = pd.to_datetime(entries["timestamp"], utc=True).min()
    return [
        Finding(
            "logs",
            "warning",
            f"only the newest {LOG_LIMIT} log entries were read: the checks cover "
            f"{when(oldest, facts.zone)} onwards, not the whole window from "
            f"{when(facts.since, facts.zone)}",
            f"{len(entries)} entries read (the limit keeps a diagnosis to a few API calls)",
            "pass a shorter window (opslib doctor PARAMS --since 1h) to see all of it",
        )
    ]


def _with_params(rows: list[Finding], facts: Facts) -> list[Finding]:
    """Every command a finding prints names the user's own parameters file (as they can type
    it from here), so it runs as printed; PARAMS stays only when the file is not known (papermill
    given the keys, not a file)."""
    if facts.params is None or not facts.params.is_file() or facts.root is None:
        return rows
    path = shlex.quote(typed(facts.params, facts.root))
    word = re.compile(r"\bPARAMS(\.yaml)?\b")
    return [r._replace(fix=word.sub(path, r.fix), finding=word.sub(path, r.finding)) for r in rows]


def _named(rows: list[Finding]) -> list[Finding]:
    """A fix that only points elsewhere ("see [route] ...") also quotes what that finding says."""
    first: dict[str, str] = {}
    for row in rows:
        if row.severity != "ok":
            first.setdefault(row.check, row.finding)
    named = []
    for row in rows:
        fix = row.fix
        if fix.startswith("see ["):
            pointed = POINTER.match(fix)
            assert pointed is not None
            if not set(LABEL.findall(pointed.group(0))) & (set(first) - {row.check}):
                # No other check found the cause: a pointer to nothing would leave them stuck.
                fix = UNEXPLAINED
            for check, finding in first.items():
                if check != row.check:
                    fix = fix.replace(f"[{check}]", f"[{check}] ({finding})", 1)
        named.append(row._replace(fix=fix))
    return named


# "see [a] and [b]": a fix that points at the findings that explain it (checks.see).
POINTER = re.compile(r"see \[[^\]]+\](?: and \[[^\]]+\])*")
LABEL = re.compile(r"\[([^\]]+)\]")
UNEXPLAINED = (
    "no other check found why; the error lines of the runs say it: opslib logs PARAMS --errors"
)


def diagnose(session: Session, since: timedelta = timedelta(hours=24)) -> pd.DataFrame:
    """Every check's findings for the session's automation, errors first; `ok` rows for the
    rest. The session says where its parameters file and service folder are, so a fix names
    the files of every job on the service and the code check reads the job's module."""
    facts = gather(session, since)
    rows = [finding for check in CHECKS[facts.runtime] for finding in check(facts)]
    rows += [
        Finding(what, "warning", f"could not read the {what}", text, "check your access to it")
        for what, text in facts.errors.items()
        if what in UNREAD
    ]
    rows = _with_params(_named(rows + _coverage(facts)), facts)
    frame = pd.DataFrame([r._asdict() for r in rows], columns=list(Finding._fields))
    frame["severity"] = pd.Categorical(frame["severity"], categories=SEVERITIES, ordered=True)
    frame = frame.sort_values("severity", kind="stable").reset_index(drop=True)
    return frame[list(COLUMNS)]


def problems(findings: pd.DataFrame) -> pd.DataFrame:
    """The rows that need attention (error, warning, info)."""
    return findings[findings["severity"] != "ok"].reset_index(drop=True)


def has_errors(findings: pd.DataFrame) -> bool:
    return bool((findings["severity"] == "error").any())


def verdict(findings: pd.DataFrame, job: str, time_zone: str | None = None) -> Banner:
    """The doctor's one-line result: nothing wrong, or how many findings of which severity,
    timed on the job's clock (`time_zone`, its schedule.time_zone)."""
    from opslib.core.display import banner

    counts = problems(findings)["severity"].astype(str).value_counts()
    counts = counts[counts > 0]
    if counts.empty:
        return banner("passed", f"doctor {job}: nothing is wrong", word="OK", time_zone=time_zone)
    summary = ", ".join(f"{n} {severity}" for severity, n in counts.items())
    status = "failed" if "error" in counts else "warning"
    word = f"{int(counts.sum())} FINDINGS"
    return banner(status, f"doctor {job}: {summary}", word=word, time_zone=time_zone)


def render(findings: pd.DataFrame, width: int = 100) -> str:
    """The findings as blocks people read in a terminal, then the list of what was checked."""
    bad, fine = problems(findings), findings[findings["severity"] == "ok"]
    # Lines break at spaces only, so a command or a path is never cut inside (copy it whole).
    wrap = textwrap.TextWrapper(
        width=width, subsequent_indent=" " * 12, break_on_hyphens=False, break_long_words=False
    )
    lines = []
    for row in bad.itertuples():
        lines.append(wrap.fill(f"{row.severity.upper():<8}[{row.check}] {row.finding}"))
        if row.evidence:
            lines.append(wrap.fill(f"  evidence: {row.evidence}"))
        if row.fix:
            lines.append(wrap.fill(f"  fix:      {row.fix}"))
        lines.append("")
    if bad.empty:
        lines.append("nothing is wrong: every check passed\n")
    lines.append("checked and fine:" if len(fine) else "")
    for row in fine.itertuples():
        evidence = f" ({row.evidence})" if row.evidence else ""
        lines.append(wrap.fill(f"  ok  [{row.check}] {row.finding}{evidence}"))
    return "\n".join(lines).rstrip()


def queries(spec: Spec, freshness: str = "1d") -> pd.DataFrame:
    """The seed's log queries for this automation, and the ones behind each check, for gcloud."""
    rows = _job_queries(spec) if spec.job.effective_runtime == "job" else _route_queries(spec)
    where = [f"--project={spec.project}", f"--freshness={freshness}", "--limit=20"]
    frame = pd.DataFrame(rows, columns=["purpose", "filter"])
    frame["gcloud"] = [
        shlex.join(["gcloud", "logging", "read", f, *where]) for f in frame["filter"]
    ]
    place = [f"--project={spec.project}", f"--location={spec.region}"]
    describe = ["gcloud", "scheduler", "jobs", "describe", spec.job.name, *place]
    extra = [("the job's state and last status", describe)]
    if spec.job.effective_runtime == "job":
        listing = ["gcloud", "run", "jobs", "executions", "list", f"--job={spec.job.name}"]
        place = [f"--project={spec.project}", f"--region={spec.region}"]
        extra.append(("the Cloud Run job's executions and task counts", [*listing, *place]))
    more = pd.DataFrame(
        [{"purpose": what, "filter": "", "gcloud": shlex.join(line)} for what, line in extra]
    )
    return pd.concat([frame, more], ignore_index=True)


def _job_queries(spec: Spec) -> list[tuple[str, str]]:
    """A Cloud Run job's: its tasks' lines (resource.type=cloud_run_job) and Scheduler's."""
    tasks = " AND ".join(resource_clause(spec))
    return [
        ("errors of the job's tasks", f"{tasks} AND severity>=ERROR"),
        ("tasks that skipped (job.overlap)", f"{tasks} AND jsonPayload.status=skipped"),
        ("429s and retries of the job's calls", f'{tasks} AND (jsonPayload.status=429 OR "429")'),
        (
            "Scheduler attempts (the jobs:run calls)",
            f"resource.type=cloud_scheduler_job AND resource.labels.job_id={spec.job.name}",
        ),
    ]


def _route_queries(spec: Spec) -> list[tuple[str, str]]:
    service = f"resource.type=cloud_run_revision AND resource.labels.service_name={spec.service}"
    return [
        ("errors of the service", f"{service} AND severity>=ERROR"),
        (
            "504s and other failed requests",
            f'{service} AND log_id("run.googleapis.com/requests") AND httpRequest.status>=400',
        ),
        (
            "cold starts",
            f'{service} AND log_id("run.googleapis.com/varlog/system") '
            'AND textPayload:"Starting new instance"',
        ),
        ("429s and retries of the job's calls", f'{service} AND (jsonPayload.status=429 OR "429")'),
        (
            "Scheduler attempts",
            f"resource.type=cloud_scheduler_job AND resource.labels.job_id={spec.job.name}",
        ),
    ]
