"""The channels and alert policies a spec's `alerts:` block asks for, and their diff against
the live ones: the alerts step's plan, from one function per resource.

What fires, from a log line that proves it (Cloud Monitoring log-match conditions):
- `failed`: an ERROR line of the job's run (the service's lines tagged with the job, or the
  Cloud Run job's), or Scheduler's failed attempt for it;
- `overrun` (route jobs): Scheduler's attempt ended DEADLINE_EXCEEDED, i.e. the run was still
  going when the attempt deadline passed.
Each policy notifies once per incident (rate limit 5 min; an incident closes 30 min after its
last matching line), so retries of one failure do not page twice. A webhook channel's URL
comes from Secret Manager and is compared, never shown.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.cloud import monitoring_v3

from opslib.core.plan import Diff, diff
from opslib.spec import names
from opslib.spec.alerts import Channel
from opslib.spec.model import Spec

RATE_LIMIT = 300.0  # seconds: the least Monitoring allows for a log-match policy
AUTO_CLOSE = 1800.0  # seconds: the least; a failure 30 min after the last is a new incident
HIDDEN = ("labels.url",)  # a webhook URL carries its token
EXTRACTORS = {
    "run_id": "EXTRACT(jsonPayload.run_id)",
    "error": "EXTRACT(jsonPayload.message)",
    "detail": "EXTRACT(jsonPayload.debugInfo)",
}
SEVERITY = {"failed": "ERROR", "overrun": "WARNING"}


def kinds(spec: Spec) -> tuple[str, ...]:
    """What can be watched from log lines: a Cloud Run job's timeout leaves no Scheduler line."""
    return ("failed", "overrun") if spec.job.effective_runtime == "service" else ("failed",)


def _scheduler(spec: Spec) -> str:
    return (
        'resource.type="cloud_scheduler_job" AND '
        f'resource.labels.job_id="{spec.job.name}" AND resource.labels.location="{spec.region}"'
    )


def log_filter(spec: Spec, kind: str) -> str:
    """The log-match condition of `kind`: the lines that prove it happened."""
    deadline = 'jsonPayload.status="DEADLINE_EXCEEDED"'
    if kind == "overrun":
        return f"{_scheduler(spec)} AND {deadline}"
    if spec.job.effective_runtime == "job":
        runs = (
            'resource.type="cloud_run_job" AND '
            f'resource.labels.job_name="{spec.job.name}" AND '
            f'resource.labels.location="{spec.region}"'
        )
    else:
        runs = (
            'resource.type="cloud_run_revision" AND '
            f'resource.labels.service_name="{spec.service}" AND '
            f'resource.labels.location="{spec.region}" AND jsonPayload.job="{spec.job.name}"'
        )
    return f"severity>=ERROR AND (({runs}) OR ({_scheduler(spec)} AND NOT {deadline}))"


def documentation(spec: Spec, kind: str, doctor: str) -> str:
    """What the notification says: the job, the run, the first error line, the doctor command."""
    what = "failed" if kind == "failed" else "ran past its attempt deadline (overrun)"
    return (
        f"opslib: {spec.job.name} {what} in {spec.project}/{spec.region}.\n"
        "run: ${log.extracted_label.run_id}\n"
        "first error line: ${log.extracted_label.error}${log.extracted_label.detail}\n"
        f"diagnose: {doctor}"
    )


def desired_channel(spec: Spec, channel: Channel, url: str | None) -> dict[str, Any]:
    """The notification channel for one spec channel (`url`: the webhook's, from its secret)."""
    base = {
        "display_name": names.alert_channel(spec, channel.key),
        "user_labels": names.alert_labels(spec),
        "enabled": True,
    }
    if channel.email is not None:
        return {**base, "type": "email", "labels": {"email_address": channel.email}}
    return {**base, "type": "webhook_tokenauth", "labels": {"url": url or ""}}


def desired_policy(spec: Spec, kind: str, channels: list[str], doctor: str) -> dict[str, Any]:
    """The alert policy for `kind`, sending to `channels` (their resource names)."""
    return {
        "display_name": names.alert_policy(spec, kind),
        "user_labels": {**names.alert_labels(spec), "opslib_alert": kind},
        "documentation": {
            "content": documentation(spec, kind, doctor),
            "mime_type": "text/markdown",
        },
        "conditions": [
            {
                "display_name": f"{spec.job.name} {kind}",
                "condition_matched_log": {
                    "filter": log_filter(spec, kind),
                    "label_extractors": EXTRACTORS,
                },
            }
        ],
        "combiner": "OR",
        "enabled": True,
        "severity": SEVERITY[kind],
        "notification_channels": channels,
        "alert_strategy": {
            "notification_rate_limit": {"period": timedelta(seconds=RATE_LIMIT)},
            "auto_close": timedelta(seconds=AUTO_CLOSE),
        },
    }


def flat_channel(channel: dict[str, Any] | monitoring_v3.NotificationChannel) -> dict[str, object]:
    """A channel's compared fields."""
    c = monitoring_v3.NotificationChannel(channel)
    values: dict[str, object] = {
        "type": c.type_,
        "enabled": bool(c.enabled) if "enabled" in c else True,
        "user_labels": sorted(c.user_labels.items()),
    }
    return values | {f"labels.{k}": v for k, v in sorted(c.labels.items())}


def flat_policy(
    policy: dict[str, Any] | monitoring_v3.AlertPolicy, shown: dict[str, str]
) -> dict[str, object]:
    """A policy's compared fields; channels by display name (`shown`: name -> display name)."""
    p = monitoring_v3.AlertPolicy(policy)
    condition = p.conditions[0] if p.conditions else monitoring_v3.AlertPolicy.Condition()
    log = condition.condition_matched_log
    strategy = p.alert_strategy
    return {
        "documentation": p.documentation.content,
        "condition.filter": log.filter,
        "condition.label_extractors": sorted(log.label_extractors.items()),
        "notification_channels": sorted(shown.get(n, n) for n in p.notification_channels),
        "severity": p.severity.name,
        "enabled": bool(p.enabled) if "enabled" in p else True,
        "user_labels": sorted(p.user_labels.items()),
        "rate_limit": strategy.notification_rate_limit.period.total_seconds(),
        "auto_close": strategy.auto_close.total_seconds(),
    }


def channel_diff(desired: dict[str, Any], live: monitoring_v3.NotificationChannel | None) -> Diff:
    return diff(flat_channel(desired), flat_channel(live) if live is not None else None, HIDDEN)


def policy_diff(
    desired: dict[str, Any], live: monitoring_v3.AlertPolicy | None, shown: dict[str, str]
) -> Diff:
    want = flat_policy(desired, {n: n for n in desired["notification_channels"]})
    return diff(want, flat_policy(live, shown) if live is not None else None)
