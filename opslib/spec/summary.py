"""What a valid spec will do, as a table people can read before anything runs."""

from __future__ import annotations

import pandas as pd

from opslib.spec import cron
from opslib.spec.model import Spec
from opslib.spec.rules import format_duration


def summarize(spec: Spec, runs: int = cron.NEXT_RUNS) -> pd.DataFrame:
    """One row per setting that matters, with the next run times in the job's zone."""
    s, d, job = spec.schedule, spec.deploy, spec.job
    next_runs = ", ".join(
        t.strftime("%a %Y-%m-%d %H:%M %Z") for t in cron.next_runs(s.cron, s.time_zone, runs)
    )
    retry = s.retry
    rows = [
        ("target", spec.target),
        ("project / region", f"{spec.project} / {spec.region}"),
        ("service", spec.service),
        ("job", f"{job.name} ({job.pattern} pattern) -> scripts/batch/{job.module}.py"),
        *_runtime_rows(spec),
        ("schedule", f"{s.cron} ({cron.describe(s.cron)}) in {s.time_zone}"),
        ("next runs", next_runs),
        ("attempt deadline", format_duration(s.attempt_deadline)),
        (
            "retries",
            f"{retry.count} (backoff {format_duration(retry.min_backoff)}"
            f"-{format_duration(retry.max_backoff)})",
        ),
        ("invoker (OIDC)", spec.invoker_account),
        (
            "resources",
            f"cpu {d.cpu}, memory {d.memory_text}, concurrency {d.effective_concurrency}",
        ),
        ("request timeout", format_duration(d.timeout)),
        ("instances", f"min {d.min_instances}, max {d.max_instances}"),
        ("env", ", ".join(sorted(d.env)) or "-"),
        ("secrets", ", ".join(f"{k} <- {v}" for k, v in sorted(spec.secrets.items())) or "-"),
    ]
    if spec.alerts is not None:  # where failures go (a webhook by its secret's name only)
        watched = "failed, overrun" if job.effective_runtime == "service" else "failed"
        sent = ", ".join(c.key for c in spec.alerts.channels)
        rows.append(("alerts", f"{watched} -> {sent}"))
    if job.expected_duration is not None:
        rows.insert(8, ("expected duration", format_duration(job.expected_duration)))
    if job.effective_runtime == "job":  # no route: the service's request settings do not apply
        shown = {"invoker (OIDC)": "invoker (OAuth, run.jobs.run)"}
        rows = [(shown.get(k, k), v) for k, v in rows if k not in ("request timeout", "instances")]
    return pd.DataFrame(rows, columns=["setting", "value"])


def _runtime_rows(spec: Spec) -> list[tuple[str, str]]:
    """A route on the service, or a Cloud Run job with its tasks."""
    job = spec.job
    if job.effective_runtime == "service":
        return [
            ("runtime", f"service {spec.service} (a route; Scheduler waits for the answer)"),
            ("route", f"{spec.schedule.http_method} {job.route}"),
            ("overlap", job.overlap),
        ]
    parallel = job.parallelism or "as many as possible"
    return [
        ("runtime", f"Cloud Run job {job.name} (python -m scripts.batch.{job.module})"),
        (
            "tasks",
            f"{job.tasks} (parallelism {parallel}), timeout "
            f"{format_duration(job.effective_task_timeout)}, {job.max_retries} retries each",
        ),
        ("overlap", job.overlap),
    ]
