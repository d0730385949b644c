"""Drift: each field where a parameters file and what Google runs differ, as `field: live -> file`.

The Scheduler job against step 4's settings, the service against what all its route jobs ask
(step 3), a Cloud Run job against its spec, and the job's route against the routes the live
revision recorded. Values are normalised first (cron spacing, UTC's spellings, memory and CPU
units, secret names), so only a change steps 3-4 would make counts as drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opslib.spec import rules as g

if TYPE_CHECKING:
    from opslib.spec.model import Spec

RUN_TIMEOUT_DEFAULT = 300.0  # Cloud Run's request timeout when the template leaves it unset
DEADLINE_DEFAULT = 180.0  # Scheduler's HTTP attempt deadline when unset


def normal_cron(expr: str) -> str:
    """The cron with its spaces folded: spacing alone is not drift."""
    return " ".join(expr.split())


def normal_zone(name: str) -> str:
    """Scheduler treats no zone, `utc`, `UTC` and `Etc/UTC` alike."""
    return "Etc/UTC" if name.lower() in ("", "utc", "etc/utc") else name


def _seconds(message: Any, name: str) -> float:
    """A Duration field in seconds, 0 when unset."""
    if not message.HasField(name):
        return 0.0
    value = getattr(message, name)
    return value.seconds + value.nanos / 1e9


def _changes(pairs: Sequence[tuple[str, object, object]]) -> list[str]:
    """`field: live -> file` for each pair that differs."""
    return [f"{name}: {live!r} -> {file!r}" for name, live, file in pairs if live != file]


def job_drift(spec: Spec, job: Any, uris: Sequence[str]) -> list[str]:
    """The Scheduler job's fields step 4 would change: cron, time zone, deadline, target URL
    (one of `uris`; none known when the service is missing)."""
    if job is None:
        return []
    s, fmt = spec.schedule, g.format_duration
    deadline = _seconds(job, "attempt_deadline") or DEADLINE_DEFAULT
    pairs: list[tuple[str, object, object]] = [
        ("cron", normal_cron(job.schedule), normal_cron(s.cron)),
        ("time_zone", normal_zone(job.time_zone), normal_zone(s.time_zone)),
        ("attempt_deadline", fmt(deadline), fmt(s.attempt_deadline)),
    ]
    if uris and job.http_target.uri not in uris:
        pairs.append(("uri", job.http_target.uri, uris[0]))
    return _changes(pairs)


def service_drift(spec: Spec, service: Any) -> list[str]:
    """The service's fields that step 3 would change, `spec` being what all its jobs ask."""
    if service is None:
        return []
    template, d = service.template, spec.deploy
    limits = template.containers[0].resources.limits if template.containers else {}
    timeout = _seconds(template, "timeout") or RUN_TIMEOUT_DEFAULT
    return _changes(
        [
            ("memory", _memory(limits.get("memory", "512Mi")), d.memory_text),
            ("cpu", _cpu(limits.get("cpu", "1")), _cpu(d.cpu)),
            ("timeout", g.format_duration(timeout), g.format_duration(d.timeout)),
            ("min_instances", template.scaling.min_instance_count, d.min_instances),
            ("secrets", _live_secrets(template), _spec_secrets(spec)),
        ]
    )


def run_job_drift(spec: Spec, run_job: Any) -> list[str]:
    """The Cloud Run job's fields step 3 would change (its own resources, tasks and secrets)."""
    if run_job is None:
        return []
    execution, job, d = run_job.template, spec.job, spec.deploy
    task = execution.template
    limits = task.containers[0].resources.limits if task.containers else {}
    timeout = g.format_duration(_seconds(task, "timeout") or 600)  # Cloud Run's default: 10 min
    return _changes(
        [
            ("memory", _memory(limits.get("memory", "512Mi")), d.memory_text),
            ("cpu", _cpu(limits.get("cpu", "1")), _cpu(d.cpu)),
            ("task_timeout", timeout, g.format_duration(job.effective_task_timeout)),
            ("max_retries", task.max_retries, job.max_retries),
            ("tasks", execution.task_count, job.tasks),
            ("parallelism", execution.parallelism, job.parallelism),
            ("secrets", _live_secrets(task), _spec_secrets(spec)),
        ]
    )


def route_drift(spec: Spec, routes: list[str] | None) -> list[str]:
    """The job's route, when the live revision recorded its routes and this one is not there."""
    if routes is None or spec.job.route in routes:
        return []
    return [f"route: not served -> {spec.job.route!r}"]


def _memory(text: object) -> str:
    try:
        return g.format_memory(g.parse_memory(text))
    except g.RuleBroken:
        return str(text)


def _cpu(value: object) -> str:
    try:
        return str(g.parse_cpu(value).normalize())
    except g.RuleBroken:
        return str(value)


def _secret(ref: str, version: str) -> str:
    """`NAME:VERSION`, whether the secret is named alone or as projects/P/secrets/NAME."""
    return f"{ref.rsplit('/', 1)[-1]}:{version or 'latest'}"


def _live_secrets(template: Any) -> list[str]:
    found = []
    for container in template.containers:
        for var in container.env:
            ref = var.value_source.secret_key_ref
            if ref.secret:
                found.append(f"{var.name}={_secret(ref.secret, ref.version)}")
    return sorted(found)


def _spec_secrets(spec: Spec) -> list[str]:
    return sorted(f"{k}={_secret(*v.rsplit(':', 1))}" for k, v in spec.secrets.items())
