"""The doctor's checks of a Cloud Run job (`runtime: job`): the job, its tasks, their timeout.

Scheduler only starts an execution (its `:run` call answers at once), so what the work did is
in the executions: their task counts (succeeded, failed, retried), each failed task's last
attempt (exit code, or "the configured timeout was reached") and the tasks' own lines in the
`cloud_run_job` logs (the error a task raised). A fix names the spec key and the parameters
file, or the module, and the command that applies it: `opslib run PARAMS --steps 3-5`
redeploys the job (step 3) and runs it once, judging its tasks (step 5).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from opslib.cloud import codes
from opslib.doctor.calls import RATE_LIMITED, counted_errors
from opslib.doctor.checks import (
    AUTH_CODES,
    RUN_JOB_CHECK,
    Finding,
    Missing,
    absent,
    command,
    module_path,
    ok,
    params_file,
    secs,
    see,
    seen_codes,
    when,
)
from opslib.doctor.facts import Facts
from opslib.doctor.timing import HEADROOM, TIGHT
from opslib.spec import defaults, names
from opslib.spec import rules as g

TASKS = "tasks"
TIMEOUT = "task timeout"
TIMED_OUT = "DEADLINE_EXCEEDED"  # a task attempt's status when it ran into its timeout
_ERRORS = ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")


def redeploy(facts: Facts) -> str:
    """The command that redeploys the job and runs it once (steps 3-5)."""
    return (
        f"run {command(facts, 'run', '--steps', '3-5')} (step 3 redeploys the job, step 5 "
        "runs it and judges its tasks)"
    )


def task_timeout(facts: Facts) -> float:
    """A task's timeout as live (the spec's when there is no Cloud Run job)."""
    if facts.run_job is None:
        return facts.spec.job.effective_task_timeout
    live = facts.run_job.template.template.timeout.total_seconds()
    return live or defaults.TASK_TIMEOUT


def completed(facts: Facts) -> list[Any]:
    """The executions in the window that have ended, newest first."""
    return [e for e in facts.executions or [] if e.completion_time]


def failed(execution: Any) -> bool:
    """A task ran out of retries, or the execution ended otherwise than in success."""
    ending = [c for c in execution.conditions if c.type_ == "Completed"]
    return bool(execution.failed_count) or any(c.state.name == "CONDITION_FAILED" for c in ending)


def _ending(execution: Any) -> str:
    """What Cloud Run said when the execution ended (its Completed condition's message)."""
    ending = [c.message for c in execution.conditions if c.type_ == "Completed" and c.message]
    return ending[-1] if ending else ""


def _counts(execution: Any) -> str:
    return (
        f"{names.short(execution.name)}: {execution.succeeded_count} of "
        f"{execution.task_count} task(s) succeeded, {execution.failed_count} failed, "
        f"{execution.retried_count} retried"
    )


def failed_tasks(facts: Facts, execution: Any) -> list[Any]:
    """The execution's tasks whose last attempt failed (read for troubled executions only)."""
    tasks = facts.tasks.get(execution.name, [])
    return [t for t in tasks if t.completion_time and t.last_attempt_result.status.code]


def timed_out(task: Any) -> bool:
    """The task's last attempt ran into its timeout (Cloud Run: "The configured timeout was
    reached.", DEADLINE_EXCEEDED)."""
    status = task.last_attempt_result.status
    return codes.name(status.code) == TIMED_OUT or "timeout was reached" in status.message


def check_cloud_run_job(facts: Facts) -> list[Finding]:
    """The Cloud Run job exists and is ready; Scheduler's `:run` calls do not fail."""
    spec, job = facts.spec, facts.run_job
    if job is None:
        what = f"Cloud Run job {spec.job.name}"
        missing = Missing(what, RUN_JOB_CHECK, "run.jobs.get", "roles/run.viewer")
        fix = f"run {command(facts, 'deploy')} (step 3 builds the image and deploys the job)"
        return absent(facts, RUN_JOB_CHECK, missing, fix, seen_codes(facts, ("NOT_FOUND",), ()))
    findings = []
    condition = job.terminal_condition
    if condition.state.name == "CONDITION_FAILED":
        findings.append(
            Finding(
                RUN_JOB_CHECK,
                "error",
                f"Cloud Run job {spec.job.name} is not ready",
                f"terminal condition {condition.reason.name}: {condition.message}",
                f"correct what the message names, then run {command(facts, 'deploy')}",
            )
        )
    findings += _run_failed(facts)
    return findings or [_ready(facts)]


def _ready(facts: Facts) -> Finding:
    template, executions = facts.run_job.template, facts.executions or []
    evidence = f"{len(executions)} execution(s) in the window"
    if executions:
        newest = executions[0]
        state = "running" if not newest.completion_time else "failed" if failed(newest) else "ok"
        evidence += (
            f"; the newest, {names.short(newest.name)}, created "
            f"{when(newest.create_time, facts.zone)}: {state}"
        )
    return ok(
        RUN_JOB_CHECK,
        f"Cloud Run job {facts.spec.job.name} is ready: {template.task_count} task(s), "
        f"{template.parallelism or 'all'} at once, each up to {secs(task_timeout(facts))} with "
        f"at most {template.template.max_retries} retry(ies)",
        evidence,
    )


def _run_failed(facts: Facts) -> list[Finding]:
    """Scheduler's `:run` calls that failed for another reason than auth (which `auth`
    explains): an error while the newest one did, else info."""
    attempts, job = facts.attempts, facts.job
    if len(attempts):
        bad = attempts[~attempts["code"].isin(("OK", *AUTH_CODES))]
        if not len(bad):
            return []
        last = bad.iloc[-1]
        code, newest = str(last["code"]), bad.index[-1] == attempts.index[-1]
        kinds = ", ".join(f"{c} x{n}" for c, n in bad["code"].value_counts().items())
        text = (
            f"{len(bad)} of {len(attempts)} attempt(s) failed ({kinds}); last at "
            f"{when(last['end'], facts.zone)}: {last['detail'] or code}"
        )
    elif job is not None and codes.name(job.status.code) not in ("OK", *AUTH_CODES):
        code, newest = codes.name(job.status.code), True
        text = f"the last attempt ended {code}: {job.status.message}"
    else:
        return []
    fix = f"run {command(facts, 'verify')} to start it again"
    fix = (
        f"the job is there now (deployed since?): {fix}"
        if code == "NOT_FOUND"
        else f"{fix}; if it keeps failing, read the message and https://status.cloud.google.com"
    )
    return [
        Finding(
            RUN_JOB_CHECK,
            "error" if newest else "info",
            f"the Scheduler job's :run call of Cloud Run job {facts.spec.job.name} failed ({code})",
            text,
            fix,
        )
    ]


def check_tasks(facts: Facts) -> list[Finding]:
    """The tasks of the executions in the window: failed ones (the newest failure's task and
    its last error line), ones that needed a retry, and results that counted errors."""
    if facts.run_job is None or facts.executions is None:
        return []  # the Cloud Run job's row, or the unreadable one, says why
    done, name = completed(facts), facts.spec.job.name
    if not done:
        running = len(facts.executions)
        return [ok(TASKS, f"no execution of {name} finished in the window ({running} running)")]
    broken = [e for e in done if failed(e)]
    findings = [_failure(facts, broken, done)] if broken else []
    findings += _retried(facts, [e for e in done if e.retried_count and not failed(e)])
    ends = _ends(facts)
    counted = ends[(ends["status"] == "success") & (ends["errors"].fillna(0) > 0)]
    findings += counted_errors(counted, facts.zone, TASKS)
    if findings:
        return findings
    processed = int(ends["processed"].fillna(0).sum()) if len(ends) else 0
    return [
        ok(
            TASKS,
            f"{len(done)} execution(s) of {name} finished: every task succeeded",
            f"{sum(e.task_count for e in done)} task(s), none retried; processed {processed}",
        )
    ]


def _ends(facts: Facts) -> pd.DataFrame:
    """The job's task attempts' end lines (success or error)."""
    app = facts.app
    if app.empty:
        return app
    return app[(app["job"] == facts.spec.job.name) & app["status"].isin(("success", "error"))]


def _failure(facts: Facts, broken: list[Any], done: list[Any]) -> Finding:
    """The newest failed execution: which task failed and why, and what to change."""
    execution = broken[0]
    tasks = failed_tasks(facts, execution)
    evidence = [f"{_counts(execution)} (created {when(execution.create_time, facts.zone)})"]
    evidence.append(f"{len(broken)} of {len(done)} execution(s) in the window failed")
    if done[0].name != execution.name:
        return Finding(
            TASKS,
            "info",
            f"{len(broken)} execution(s) of {facts.spec.job.name} failed in the window; the "
            f"newest, {names.short(done[0].name)}, succeeded",
            "; ".join([*evidence, _error(facts, execution, tasks[0] if tasks else None)]),
            f"nothing to do if that was fixed; {command(facts, 'verify')} runs it once more",
        )
    if not tasks:  # stopped before its tasks ran (no image, a secret), cancelled, unreadable
        return Finding(
            TASKS,
            "error",
            f"execution {names.short(execution.name)} failed: {_ending(execution)}",
            "; ".join(evidence),
            f"correct what the message names, then {redeploy(facts)}",
        )
    task, result = tasks[0], tasks[0].last_attempt_result
    evidence.append(f"failed task(s): {', '.join(str(t.index) for t in tasks)}")
    evidence.append(
        f"task {task.index}'s last attempt: exit code {result.exit_code}, {result.status.message}"
    )
    line = _error(facts, execution, task)
    where = f"task {task.index} of execution {names.short(execution.name)}"
    if timed_out(task):
        finding = f"{where} ran into its {secs(task.timeout.total_seconds())} timeout"
        fix = f"{see(TIMEOUT)} for the timeout to set"
    else:
        finding = f"{where} failed after {task.retried + 1} attempt(s): {line}"
        fix = (
            see("rate limit (429)")
            if RATE_LIMITED.search(line)
            else f"task {task.index} raised it: fix {module_path(facts)}, then {redeploy(facts)}"
        )
    return Finding(TASKS, "error", finding, "; ".join(evidence), fix)


def _error(facts: Facts, execution: Any, task: Any | None) -> str:
    """The task's last error line in the logs, else how Cloud Run says its attempt ended."""
    app, short = facts.app, names.short(execution.name)
    mine = app[(app["execution"] == short) & app["severity"].isin(_ERRORS)] if len(app) else app
    if task is not None and len(mine):
        mine = mine[mine["task"] == task.index]
    messages = [m for m in mine["message"] if isinstance(m, str) and m.strip()]
    if messages:
        return messages[-1].strip().splitlines()[0][:300]
    if task is not None:
        result = task.last_attempt_result
        return f"exit code {result.exit_code}: {result.status.message}"
    return _ending(execution)


def _retried(facts: Facts, retried: list[Any]) -> list[Finding]:
    """Executions that succeeded only because a failed task was retried."""
    if not retried:
        return []
    total = sum(e.retried_count for e in retried)
    execution = retried[0]
    return [
        Finding(
            TASKS,
            "info",
            f"{total} task(s) failed and then succeeded on a retry, in {len(retried)} execution(s)",
            f"{_counts(execution)}; {_error(facts, execution, None)}",
            "the retries covered it; if it recurs, make the failing step retry on its own "
            "(scripts.common.http's policy for HTTP calls) or keep job.max_retries above 0",
        )
    ]


def check_task_timeout(facts: Facts) -> list[Finding]:
    """No task ran into its timeout, and the longest task leaves room under it and is what
    job.expected_duration says."""
    if facts.run_job is None:
        return []
    timeout, longest = task_timeout(facts), _longest(facts)
    cut = [(e, t) for e in completed(facts) for t in failed_tasks(facts, e) if timed_out(t)]
    if cut:
        return [_cut(facts, cut, timeout, longest)]
    expected = facts.spec.job.expected_duration
    ran = f"the longest task took {secs(longest)}" if longest else "no task finished yet"
    basis = f"{ran}; task timeout {secs(timeout)}; job.expected_duration {_secs(expected)}"
    if longest is not None and longest >= TIGHT * timeout:
        want = _timeout_for(longest * HEADROOM)
        return [
            Finding(
                TIMEOUT,
                "warning",
                f"little headroom: the longest task took {longest / timeout:.0%} of its timeout",
                basis,
                f"set job.task_timeout: {secs(want)} in {params_file(facts)}, then "
                f"{redeploy(facts)}",
            )
        ]
    if expected and longest and longest > expected * HEADROOM:
        return [
            Finding(
                TIMEOUT,
                "info",
                f"job.expected_duration ({secs(expected)}) understates the tasks",
                basis,
                f"set job.expected_duration: {secs(math.ceil(longest))} in {params_file(facts)}",
            )
        ]
    return [ok(TIMEOUT, f"no task ran into its {secs(timeout)} timeout", basis)]


def _cut(
    facts: Facts, cut: list[tuple[Any, Any]], timeout: float, longest: float | None
) -> Finding:
    """Tasks the timeout stopped: how long they ran, and a timeout that lets them finish."""
    execution, task = cut[0]
    limit = task.timeout.total_seconds() or timeout
    ran = (task.completion_time - task.start_time).total_seconds() if task.start_time else limit
    expected = facts.spec.job.expected_duration or 0.0
    observed = max(ran, limit)
    want = _timeout_for(max(2 * observed, HEADROOM * (longest or 0.0), HEADROOM * expected))
    evidence = (
        f"task {task.index} of execution {names.short(execution.name)} (created "
        f"{when(execution.create_time, facts.zone)}) ran {secs(ran)} and was stopped: "
        f"{task.last_attempt_result.status.message} (its timeout {secs(limit)}); {len(cut)} "
        f"task(s) cut in the window; job.expected_duration {_secs(expected)}"
    )
    if expected and observed > expected:
        evidence += " understates the work"
    if longest:
        evidence += f"; the longest task that finished took {secs(longest)}"
    newest = completed(facts)[0].name == execution.name
    severity = "error" if newest else "info" if timeout >= want else "warning"
    return Finding(
        TIMEOUT,
        severity,
        f"{len(cut)} task(s) of {facts.spec.job.name} ran into the {secs(limit)} task timeout "
        "and were stopped",
        evidence + f"; a task that is cut ran at least {secs(observed)}: twice that is "
        f"{secs(2 * observed)}",
        _timeout_fix(facts, want, timeout),
    )


def _timeout_fix(facts: Facts, want: float, live: float) -> str:
    """Set job.task_timeout (or split the work); only redeploy when the spec already has it."""
    spec = facts.spec
    if want > g.TASK_TIMEOUT_MAX:
        return (
            f"a task needs over 24h: split the work into more tasks (job.tasks in "
            f"{params_file(facts)}; each takes its share by CLOUD_RUN_TASK_INDEX), then "
            f"{redeploy(facts)}"
        )
    if live >= want:
        return f"the live task timeout ({secs(live)}) covers it now: nothing to do"
    have = spec.job.effective_task_timeout
    if have >= want:
        return (
            f"the spec already has job.task_timeout: {secs(have)} but the live job's is "
            f"{secs(live)}: {redeploy(facts)}"
        )
    return f"set job.task_timeout: {secs(want)} in {params_file(facts)}, then {redeploy(facts)}"


def _longest(facts: Facts) -> float | None:
    """The longest task attempt that finished its work (its end line's duration_ms)."""
    runs = facts.runs
    worked = runs[runs["status"] == "success"]["seconds"].dropna() if len(runs) else pd.Series()
    return float(worked.max()) if len(worked) else None


def _timeout_for(seconds: float) -> float:
    """A task timeout at least `seconds`, rounded up to a value people write, at least 10s."""
    want = max(seconds, 10.0)
    step = 5 if want <= 60 else 60 if want <= 600 else 300 if want <= 7200 else 1800
    return float(math.ceil(want / step) * step)


def _secs(value: float | None) -> str:
    return secs(value) if value else "not set"
