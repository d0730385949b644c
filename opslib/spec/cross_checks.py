"""The rules that tie two sections of one spec together, checked once every field is valid:
the attempt deadline against the request timeout and the expected duration, a Cloud Run job's
timeouts, the body against the HTTP method, secrets against env vars, the invoker's project.
Each broken rule is (key, value, rule, fix); `opslib.spec.loader` turns it into a message with
the file and line. `notes` are what `opslib check` says without refusing anything.
"""

from __future__ import annotations

from opslib.spec import rules as g
from opslib.spec.model import Spec

Path_ = tuple[str, ...]
Problem = tuple[Path_, object, str, str]


def cross_checks(spec: Spec) -> list[Problem]:
    """Rules that tie two keys together; each problem names the key to change."""
    return [
        *_deadline_checks(spec),
        *_duration_checks(spec),
        *_body_checks(spec),
        *_secret_checks(spec),
        *_account_checks(spec),
    ]


def _deadline_checks(spec: Spec) -> list[Problem]:
    s, d = spec.schedule, spec.deploy
    if s.attempt_deadline <= d.timeout or spec.job.effective_runtime == "job":
        return []
    return [
        (
            ("schedule", "attempt_deadline"),
            g.format_duration(s.attempt_deadline),
            f"the Scheduler attempt deadline must not exceed the Cloud Run request timeout "
            f"({g.format_duration(d.timeout)}): Cloud Run answers 504 first",
            f"raise deploy.timeout to {g.format_duration(s.attempt_deadline)} "
            f"or lower schedule.attempt_deadline to {g.format_duration(d.timeout)}",
        )
    ]


def _duration_checks(spec: Spec) -> list[Problem]:
    s = spec.schedule
    expected, fmt = spec.job.expected_duration, g.format_duration
    key = ("job", "expected_duration")
    if spec.job.effective_runtime == "job":
        return _job_checks(spec)
    shard = [k for k in ("tasks", "parallelism") if k in spec.job.model_fields_set]
    if shard:
        return [
            (
                ("job", shard[0]),
                getattr(spec.job, shard[0]),
                "tasks and parallelism apply to a Cloud Run job (job.runtime: job)",
                f"set job.runtime: job, or remove job.{shard[0]}",
            )
        ]
    if expected is None:
        return []
    if expected > g.ATTEMPT_DEADLINE_MAX:
        return [
            (
                key,
                fmt(expected),
                "work over 30 min cannot finish inside one Scheduler attempt (max 30m), and "
                "job.runtime is service",
                "remove job.runtime: service (opslib then runs it as a Cloud Run job), or split "
                "the job (e.g. one per market)",
            )
        ]
    if expected >= s.attempt_deadline:
        return [
            (
                key,
                fmt(expected),
                f"the job needs longer than the attempt deadline "
                f"({fmt(s.attempt_deadline)}): every run would end in 504",
                f"raise schedule.attempt_deadline above {fmt(expected)} "
                f"(and deploy.timeout with it)",
            )
        ]
    return []


def _job_checks(spec: Spec) -> list[Problem]:
    """A Cloud Run job: the work fits a task, and parallelism fits the tasks."""
    job, fmt = spec.job, g.format_duration
    expected = job.expected_duration
    if expected is not None and expected > g.TASK_TIMEOUT_MAX:
        return [
            (
                ("job", "expected_duration"),
                fmt(expected),
                "a Cloud Run job task runs at most 24h (job.task_timeout); the work cannot "
                "finish inside one task",
                "split the work into tasks that each fit 24h: job.tasks: N (each task reads "
                "CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT to take its share)",
            )
        ]
    problems: list[Problem] = []
    if expected is not None and job.task_timeout is not None and expected >= job.task_timeout:
        problems.append(
            (
                ("job", "task_timeout"),
                fmt(job.task_timeout),
                f"the task timeout must exceed the expected duration ({fmt(expected)}), or "
                "every task is killed",
                f"raise job.task_timeout above {fmt(expected)} (at most 24h)",
            )
        )
    if job.parallelism > job.tasks:
        problems.append(
            (
                ("job", "parallelism"),
                job.parallelism,
                f"parallelism cannot exceed the number of tasks ({job.tasks})",
                f"use parallelism: {job.tasks} or less (0 runs as many as possible)",
            )
        )
    return problems


def notes(spec: Spec) -> list[str]:
    """What `opslib check` says besides errors: choices opslib made for the user."""
    job, found = spec.job, []
    if job.effective_runtime == "job" and job.runtime is None:
        found.append(
            f"job.expected_duration {g.format_duration(job.expected_duration or 0)} is over "
            "Cloud Scheduler's 30 min: it will run as a Cloud Run job (tasks of up to 24h, "
            f"task timeout {g.format_duration(job.effective_task_timeout)}); set job.runtime "
            "to choose"
        )
    if job.effective_runtime == "job" and "attempt_deadline" in spec.schedule.model_fields_set:
        found.append(
            "schedule.attempt_deadline plays no role for a Cloud Run job: Scheduler's call "
            "only starts the execution and returns at once; job.task_timeout bounds the work"
        )
    return found


def _body_checks(spec: Spec) -> list[Problem]:
    s, key = spec.schedule, ("schedule", "body")
    problems: list[Problem] = []
    if s.body and s.http_method not in g.BODY_METHODS:
        problems.append(
            (
                key,
                s.body,
                f"Scheduler sends a body only with {', '.join(g.BODY_METHODS)} "
                f"(http_method is {s.http_method})",
                "remove schedule.body or use http_method: POST",
            )
        )
    extra = sorted(set(s.body) - {"dry_run"})
    if spec.job.pattern == "function" and extra:
        problems.append(
            (
                key,
                s.body,
                f"a function-pattern job only reads dry_run from the body (also given: {extra})",
                "remove those keys, or use job.pattern: class (its run(**kwargs) gets the body)",
            )
        )
    if len(s.body_bytes) >= g.JOB_MAX_BYTES:
        problems.append(
            (
                key,
                s.body,
                "a Scheduler job is at most 1 MB",
                "send a smaller body; put large inputs in Cloud Storage",
            )
        )
    return problems


def _secret_checks(spec: Spec) -> list[Problem]:
    return [
        (
            ("secrets", name),
            spec.secrets[name],
            f"{name} is set both as a plain env var and as a secret",
            f"remove deploy.env.{name} (keep the secret)",
        )
        for name in sorted(set(spec.secrets) & set(spec.deploy.env))
    ]


def _account_checks(spec: Spec) -> list[Problem]:
    account = spec.schedule.service_account
    if not account or g.service_account_project(account) in (None, spec.project):
        return []
    return [
        (
            ("schedule", "service_account"),
            account,
            "the OIDC service account must be in the job's project",
            f"use an account of {spec.project}, e.g. "
            f"scheduler@{spec.project}.iam.gserviceaccount.com",
        )
    ]
