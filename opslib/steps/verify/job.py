"""Step 5 for `job.runtime: job`: run it now through Scheduler and judge that execution.

The Scheduler attempt only starts the execution (its `:run` call answers at once), so the
verdict comes from the execution itself: wait on `executions.get` until it completes, then
judge its task counts (succeeded / failed / retried) and its logs (`resource.type=
"cloud_run_job"`, the execution's name label), one row per task with its last error line.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.cloud.errors import google_errors
from opslib.core.errors import OpslibError
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps import logs
from opslib.steps.verify.attempt import Verdict, run_now, wait_for_attempt

EXECUTION_LABEL = "run.googleapis.com/execution_name"
TASK_LABEL = "run.googleapis.com/task_index"
_ERRORS = ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")
# What a failed `:run` call means: Scheduler's attempt is only the Run Admin API's answer.
HINTS = {
    "UNAUTHENTICATED": "auth error: the Run Admin API refused the token (401); jobs:run takes an "
    "OAuth access token (scope cloud-platform), not an OIDC ID token — re-run step 4",
    "PERMISSION_DENIED": "auth error: the scheduler's account lacks run.jobs.run on the Cloud Run "
    "job (403; roles/run.invoker on the job holds it) — re-run step 3, which grants it",
    "NOT_FOUND": "there is no Cloud Run job to run (404) — run step 3, which deploys it",
}


def verify(spec: Spec, clients: Clients, progress: bool = True) -> Verdict:
    """Run the Scheduler job now, find the execution it started, wait for it and judge it."""
    known = {e.name for e in _executions(spec, clients)}
    before = run_now(spec, clients)
    attempt = wait_for_attempt(clients, spec, before.last_attempt_time, progress)
    code = codes.name(attempt.status.code)
    if code != "OK":
        check = ("scheduler attempt", f"{code}: {HINTS.get(code, attempt.status.message)}", False)
        return Verdict(False, code, pd.DataFrame([check], columns=["check", "value", "ok"]),
                       pd.DataFrame())  # fmt: skip
    execution = _wait_for_execution(clients, spec, known, progress)
    frame = execution_logs(clients, spec, execution)
    return judge(spec, code, execution, frame)


def _executions(spec: Spec, clients: Clients) -> list[Any]:
    """The Cloud Run job's executions, newest first (as Cloud Run lists them)."""
    with google_errors(f"verify {spec.job.name}", "run"):
        return list(clients.executions.list_executions(parent=names.run_job(spec)))


def _new_execution(clients: Clients, spec: Spec, known: set[str]) -> Any | None:
    for execution in _executions(spec, clients):
        if execution.name not in known:
            return execution
    return None


def _wait_for_execution(clients: Clients, spec: Spec, known: set[str], progress: bool) -> Any:
    """The execution Scheduler started, once it has completed (succeeded, failed or cancelled)."""
    limit = spec.job.effective_task_timeout * (spec.job.max_retries + 1) + 120
    started = time.monotonic()
    with tqdm(
        total=spec.job.tasks, desc=f"execution of {spec.job.name}", unit="task",
        disable=not progress, leave=True,
    ) as bar:  # fmt: skip
        name = None  # listed until the new execution appears, then only read by name
        while time.monotonic() - started < limit:
            if name is None:
                found = _new_execution(clients, spec, known)
                name = found.name if found is not None else None
            if name is not None:
                with google_errors(f"verify {spec.job.name}", "run"):
                    execution = clients.executions.get_execution(name=name)
                bar.update(execution.succeeded_count + execution.failed_count - bar.n)
                if execution.completion_time:
                    return execution
            time.sleep(0.3)
    raise OpslibError(
        names.run_job(spec),
        f"no execution completed within {limit:.0f}s",
        "check the job's executions and logs (opslib doctor)",
    )


def execution_logs(clients: Clients, spec: Spec, execution: Any) -> pd.DataFrame:
    """The execution's log lines, oldest first, with the task index of each."""
    short = names.short(execution.name)
    started = execution.create_time - timedelta(seconds=1)
    body = {
        "resourceNames": [names.project(spec)],
        "filter": " AND ".join(
            [
                'resource.type="cloud_run_job"',
                f"resource.labels.job_name={logs.quote(spec.job.name)}",
                f'labels."{EXECUTION_LABEL}"={logs.quote(short)}',
                f'timestamp>="{started.isoformat().replace("+00:00", "Z")}"',
            ]
        ),
        "orderBy": "timestamp asc",
        "pageSize": logs.PAGE_SIZE,
    }
    entries = logs.fetch_entries(clients.logging._connection, body, 10_000)
    frame = logs.entries_frame(entries)
    tasks = [(e.get("labels") or {}).get(TASK_LABEL) for e in entries]
    frame.insert(1, "task", pd.to_numeric(pd.Series(tasks, dtype=object)).astype("Int64"))
    return frame.drop(columns=["latency", "revision"])


def tasks_frame(spec: Spec, execution: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per task: how its last attempt ended, its counts and its last error line."""
    rows = []
    for index in range(spec.job.tasks):
        mine = frame[frame["task"] == index] if len(frame) else frame
        done = mine[mine["status"] == "success"] if len(mine) else mine
        failed = mine[mine["severity"].isin(_ERRORS)] if len(mine) else mine
        rows.append(
            {
                "task": index,
                "result": "succeeded" if len(done) else ("failed" if len(failed) else "no log"),
                "processed": _total(done, "processed"),
                "errors": _total(done, "errors"),
                "attempts_failed": int((failed["status"] == "error").sum()) if len(failed) else 0,
                "error": _first_line(failed["message"].iloc[-1]) if len(failed) else "",
            }
        )
    return pd.DataFrame(rows)


def _total(lines: pd.DataFrame, column: str) -> int:
    return int(pd.to_numeric(lines[column]).fillna(0).sum()) if len(lines) else 0


def _first_line(message: object) -> str:
    return str(message).strip().splitlines()[0][:300] if str(message).strip() else ""


def judge(spec: Spec, code: str, execution: Any, frame: pd.DataFrame) -> Verdict:
    """Passed when every task succeeded and their results report no errors."""
    tasks = tasks_frame(spec, execution, frame)
    total, ok = execution.task_count, execution.succeeded_count
    broken = tasks[tasks["result"] != "succeeded"]
    failures = "; ".join(f"task {r.task}: {r.error or r.result}" for r in broken.itertuples())
    errors = int(tasks["errors"].sum())
    checks = [
        ("scheduler attempt", code, code == "OK"),
        (
            "execution",
            f"{names.short(execution.name)}: {ok} of {total} task(s) succeeded, "
            f"{execution.failed_count} failed, {execution.retried_count} retried",
            ok == total and execution.failed_count == 0,
        ),
        ("failed tasks", failures or "none", not failures),
        ("job errors", f"processed {int(tasks['processed'].sum())}, errors {errors}", errors == 0),
    ]
    table = pd.DataFrame(checks, columns=["check", "value", "ok"])
    return Verdict(bool(table["ok"].all()), code, table, frame, tasks=tasks)
