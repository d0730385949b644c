"""Step 5 — verify: run the job now, wait for that attempt, read its logs, say pass or fail.

Pass means Scheduler's attempt succeeded AND the job's own result says it processed without
errors. The logs of the run come back in one entries:list call (a tight filter on the service
and the attempt's time window), as a DataFrame. On failure `opslib.doctor.explain` adds the
doctor's findings, so the verdict says what to change, not only that it failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd
from google.cloud import scheduler_v1
from tqdm.auto import tqdm

from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.cloud.errors import call
from opslib.core.errors import OpslibError
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps import logs

HINTS = {
    "UNAUTHENTICATED": "auth error: the OIDC token was refused (401); the audience must equal "
    "the service URL (schedule.audience) — re-run step 4",
    "PERMISSION_DENIED": "auth error: the scheduler's account lacks roles/run.invoker on the "
    "service (403) — re-run step 3, which grants it",
    "DEADLINE_EXCEEDED": "504/deadline: the job outlived the attempt deadline; raise "
    "schedule.attempt_deadline (and deploy.timeout) or split the job",
    "NOT_FOUND": "the job's route is missing on the serving revision (404): the service was "
    "deployed from a folder without it. Redeploy every job of the service from its folder at "
    "once (opslib run with each parameters file of the service --steps 1-3); the doctor's "
    "[route] finding names the exact command",
}


@dataclass
class Verdict:
    """What verify found: pass/fail, the attempt, the checks, the run's log lines and, on
    failure through `opslib.doctor.explain.verify`, the doctor's findings (else empty)."""

    passed: bool
    attempt: str
    checks: pd.DataFrame
    logs: pd.DataFrame
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    tasks: pd.DataFrame = field(default_factory=pd.DataFrame)  # a Cloud Run job: one row a task

    @property
    def run_ids(self) -> list[str]:
        """The run ids the job's own log lines carry (one per run; one per task attempt)."""
        if self.logs.empty or "run_id" not in self.logs.columns:
            return []
        return [str(r) for r in self.logs["run_id"].dropna().unique()]


def verify(spec: Spec, clients: Clients, progress: bool = True) -> Verdict:
    """Run the scheduler job now and judge that one run (a Cloud Run job: its execution)."""
    if spec.job.effective_runtime == "job":
        from opslib.steps.verify import job as verify_job

        return verify_job.verify(spec, clients, progress)
    before = run_now(spec, clients)
    job = wait_for_attempt(clients, spec, before.last_attempt_time, progress)
    code = codes.name(job.status.code)
    started = job.last_attempt_time  # when this attempt started; set once it has ended
    frame = logs.read_logs(
        clients,
        spec,
        since=started - timedelta(seconds=1),
        until=started + timedelta(seconds=spec.schedule.attempt_deadline + 5),
    )
    return _judge(spec, code, job.status.message, frame)


def run_now(spec: Spec, clients: Clients) -> scheduler_v1.Job:
    """Start the Scheduler job now; returns the job as it was just before (its last attempt)."""
    where, name = f"verify {spec.job.name}", names.scheduler_job(spec)
    before = call(clients.scheduler.get_job, where, "scheduler", missing_ok=True, name=name)
    if before is None:
        raise OpslibError(where, f"no Scheduler job {name}", "run step 4 (schedule) first")
    call(clients.scheduler.run_job, where, "scheduler", name=name)
    return before


def wait_for_attempt(clients: Clients, spec: Spec, previous: Any, progress: bool) -> Any:
    limit = spec.schedule.attempt_deadline + 60
    started, where = time.monotonic(), f"verify {spec.job.name}"
    with tqdm(
        desc=f"run {spec.job.name}",
        bar_format="{desc}: {elapsed}",
        disable=not progress,
        leave=True,
    ) as bar:
        while time.monotonic() - started < limit:
            job = call(
                clients.scheduler.get_job, where, "scheduler", name=names.scheduler_job(spec)
            )
            if job.last_attempt_time and job.last_attempt_time != previous:
                return job
            time.sleep(0.2)
            bar.refresh()
    raise OpslibError(
        where,
        f"no attempt of {names.scheduler_job(spec)} finished within {limit:.0f}s",
        "check that the scheduler and the service are running (opslib doctor)",
    )


def _judge(spec: Spec, code: str, message: str, frame: pd.DataFrame) -> Verdict:
    mine = frame[frame["job"] == spec.job.name] if len(frame) else frame
    done = mine[mine["status"] == "success"] if len(mine) else mine
    failed = mine[mine["status"] == "error"] if len(mine) else mine
    errors = int(pd.to_numeric(done["errors"], errors="coerce").fillna(0).sum()) if len(done) else 0
    processed = (
        pd.to_numeric(done["processed"], errors="coerce").fillna(0).sum() if len(done) else 0
    )
    checks = [
        (
            "scheduler attempt",
            code if code == "OK" else f"{code}: {HINTS.get(code, message)}",
            code == "OK",
        ),
        (
            "job finished",
            f"{len(done)} success line(s), {len(failed)} error line(s)",
            len(done) > 0 and not len(failed),
        ),
        (
            "job errors",
            f"processed {int(processed)}, errors {errors}",
            len(done) > 0 and errors == 0,
        ),
    ]
    table = pd.DataFrame(checks, columns=["check", "value", "ok"])
    passed = bool(table["ok"].all())
    return Verdict(passed, code, table, frame)


def error_lines(verdict: Verdict) -> pd.DataFrame:
    """The run's ERROR-and-worse lines, shown when verify fails."""
    frame = verdict.logs
    if frame.empty:
        return frame
    rank = {"ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
    return frame[frame["severity"].isin(rank)]
