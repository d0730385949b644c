"""What both runtimes' step 5 share: the verdict, starting the Scheduler job now, and waiting
for that attempt to end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from google.cloud import scheduler_v1
from tqdm.auto import tqdm

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call
from opslib.core.errors import OpslibError
from opslib.spec import names
from opslib.spec.model import Spec


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


def run_now(spec: Spec, clients: Clients) -> scheduler_v1.Job:
    """Start the Scheduler job now; returns the job as it was just before (its last attempt)."""
    where, name = f"verify {spec.job.name}", names.scheduler_job(spec)
    before = call(clients.scheduler.get_job, where, "scheduler", missing_ok=True, name=name)
    if before is None:
        raise OpslibError(where, f"no Scheduler job {name}", "run step 4 (schedule) first")
    call(clients.scheduler.run_job, where, "scheduler", name=name)
    return before


def wait_for_attempt(
    clients: Clients, spec: Spec, previous: Any, progress: bool, extra: float = 0.0
) -> Any:
    """The job once an attempt newer than `previous` has ended (`extra`: a retry's backoff)."""
    limit = spec.schedule.attempt_deadline + 60 + extra
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


def error_lines(verdict: Verdict) -> pd.DataFrame:
    """The run's ERROR-and-worse lines, shown when verify fails."""
    frame = verdict.logs
    if frame.empty:
        return frame
    rank = {"ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
    return frame[frame["severity"].isin(rank)]
