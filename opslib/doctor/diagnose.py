"""Troubleshooting: what is wrong with *this* automation, from its spec, live config and logs.

The seed's troubleshooting list (504 Gateway Timeout, cold-start failures, 429 rate limits, the
log queries) leaves users to guess which applies. `diagnose` reads the live service, its
revisions (and the routes each serves) and IAM policy, the Scheduler job and one window of logs
(Scheduler attempts, Cloud Run request logs, the app's structured lines) and runs every check on
them. The answer is a DataFrame, worst first: severity, the check, what is wrong, the evidence
(log lines, timings, config values) and the fix (the spec key to change and to what, or the
code pattern to use, or the command to run).
Checks that found nothing wrong stay in the table as `ok` rows saying what they looked at. A
symptom (the job's attempts fail) points at its cause's finding, never at itself.
"""

from __future__ import annotations

import shlex
import textwrap
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from opslib.core.display import Banner

from opslib.cloud.session import Session
from opslib.doctor.calls import check_job_errors, check_rate_limits
from opslib.doctor.checks import (
    SEVERITIES,
    Finding,
    check_auth,
    check_job,
    check_revision,
    check_service,
    when,
)
from opslib.doctor.facts import LOG_LIMIT, Facts, gather
from opslib.doctor.overlap import check_overlap
from opslib.doctor.routes import check_routes
from opslib.doctor.timing import check_chain, check_cold_start, check_deadline
from opslib.spec.model import Spec

COLUMNS = ("severity", "check", "finding", "evidence", "fix")
CHECKS: tuple[Callable[[Facts], list[Finding]], ...] = (
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
)


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
            for check, finding in first.items():
                if check != row.check:
                    fix = fix.replace(f"[{check}]", f"[{check}] ({finding})", 1)
        named.append(row._replace(fix=fix))
    return named


def diagnose(session: Session, since: timedelta = timedelta(hours=24)) -> pd.DataFrame:
    """Every check's findings for the session's automation, errors first; `ok` rows for the
    rest. The session says where its parameters file and service folder are, so a fix names
    the files of every job on the service and the code check reads the job's module."""
    facts = gather(session, since)
    rows = [finding for check in CHECKS for finding in check(facts)]
    rows += [
        Finding(what, "warning", f"could not read the {what}", text, "check your access to it")
        for what, text in facts.errors.items()
        if what in ("logs", "iam", "revision", "revisions")
    ]
    rows = _named(rows + _coverage(facts))
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
    wrap = textwrap.TextWrapper(width=width, subsequent_indent=" " * 12)
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
    service = f"resource.type=cloud_run_revision AND resource.labels.service_name={spec.service}"
    rows = [
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
    where = [f"--project={spec.project}", f"--freshness={freshness}", "--limit=20"]
    frame = pd.DataFrame(rows, columns=["purpose", "filter"])
    frame["gcloud"] = [
        shlex.join(["gcloud", "logging", "read", f, *where]) for f in frame["filter"]
    ]
    describe = ["gcloud", "scheduler", "jobs", "describe", spec.job.name]
    extra = {
        "purpose": "the job's state and last status",
        "filter": "",
        "gcloud": shlex.join([*describe, f"--project={spec.project}", f"--location={spec.region}"]),
    }
    return pd.concat([frame, pd.DataFrame([extra])], ignore_index=True)
