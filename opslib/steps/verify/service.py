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
    "UNAVAILABLE": "503: the instance serving the run stopped before it answered (a crash, "
    "out of memory, or stopped), or no instance could start; the request log line says which, "
    "and Scheduler retries per schedule.retry",
    "NOT_FOUND": "the job's route is missing on the serving revision (404): the service was "
    "deployed from a folder without it. Redeploy every job of the service from its folder at "
    "once (opslib run with each parameters file of the service --steps 1-3); the doctor's "
    "[route] finding names the exact command",
}


def verify(spec: Spec, clients: Clients, progress: bool = True) -> Verdict:
    """Run the Scheduler job now and judge that run of the route from its log lines; when an
    attempt fails and the job retries, Scheduler's retries belong to the same run."""
    before = run_now(spec, clients)
    job = wait_for_attempt(clients, spec, before.last_attempt_time, progress)
    first = job.last_attempt_time  # when this attempt started; set once it has ended
    attempts = [(codes.name(job.status.code), job.status.message)]
    for retry in range(spec.schedule.retry.count):
        if attempts[-1][0] == "OK":
            break
        wait = backoff(spec, retry)
        job = wait_for_attempt(clients, spec, job.last_attempt_time, progress, extra=wait)
        attempts.append((codes.name(job.status.code), job.status.message))
    frame = logs.read_logs(
        clients,
        spec,
        since=first - timedelta(seconds=1),
        until=job.last_attempt_time + timedelta(seconds=spec.schedule.attempt_deadline + 5),
    )
    return _judge(spec, attempts, frame)


def backoff(spec: Spec, retry: int) -> float:
    """Seconds Scheduler waits before retry `retry` (0-based): min_backoff doubled
    max_doublings times at most, then growing linearly, never above max_backoff (RetryConfig)."""
    r = spec.schedule.retry
    doubled = min(retry, r.max_doublings)
    wait = r.min_backoff * 2**doubled + r.min_backoff * 2**r.max_doublings * (retry - doubled)
    return float(min(wait, r.max_backoff))


def _attempts_text(attempts: list[tuple[str, str]]) -> str:
    """'OK', or each attempt's code with what it means: 'UNAVAILABLE: ...; retry 1: OK'."""
    parts = [
        code if code == "OK" else f"{code}: {HINTS.get(code, message)}"
        for code, message in attempts
    ]
    return "; ".join(text if i == 0 else f"retry {i}: {text}" for i, text in enumerate(parts))


def _judge(spec: Spec, attempts: list[tuple[str, str]], frame: pd.DataFrame) -> Verdict:
    code = attempts[-1][0]
    mine = frame[frame["job"] == spec.job.name] if len(frame) else frame
    done = mine[mine["status"] == "success"] if len(mine) else mine
    failed = mine[mine["status"] == "error"] if len(mine) else mine
    errors = int(pd.to_numeric(done["errors"], errors="coerce").fillna(0).sum()) if len(done) else 0
    processed = (
        pd.to_numeric(done["processed"], errors="coerce").fillna(0).sum() if len(done) else 0
    )
    skipped = mine[mine["status"] == "skipped"] if len(mine) else mine
    finished = f"{len(done)} success line(s), {len(failed)} error line(s)"
    if len(skipped):  # the overlap guard: another run (maybe a dead one) holds the job's lease
        finished += f"; {len(skipped)} run(s) {skipped.iloc[-1]['message']}"
    checks = [
        ("scheduler attempt", _attempts_text(attempts), code == "OK"),
        ("job finished", finished, len(done) > 0 and not len(failed)),
        (
            "job errors",
            f"processed {int(processed)}, errors {errors}",
            len(done) > 0 and errors == 0,
        ),
    ]
    table = pd.DataFrame(checks, columns=["check", "value", "ok"])
    passed = bool(table["ok"].all())
    return Verdict(passed, code, table, frame)
