"""Step 5 — verify: run the job now, wait for that attempt, read its logs, say pass or fail.

Pass means Scheduler's attempt succeeded AND the job's own result says it processed without
errors. The logs of the run come back in one entries:list call (a tight filter on the service
and the attempt's time window), as a DataFrame. On failure `opslib.doctor.explain` adds the
doctor's findings, so the verdict says what to change, not only that it failed.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.spec.model import Spec
from opslib.steps import logs
from opslib.steps.verify.attempt import Verdict, run_now, wait_for_attempt

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


def verify(spec: Spec, clients: Clients, progress: bool = True) -> Verdict:
    """Run the Scheduler job now and judge that one run of the route from its log lines."""
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
