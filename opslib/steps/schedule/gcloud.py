"""The gcloud command equivalent to each change step 4 makes, so people can see and repeat it."""

from __future__ import annotations

import shlex
from typing import Any

from google.cloud import scheduler_v1

from opslib.spec.model import Spec
from opslib.steps.schedule.desired import OAUTH, OIDC, flat

GCLOUD_METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT")  # gcloud's --http-method choices
FLAGS = {
    "schedule": "--schedule",
    "time_zone": "--time-zone",
    "description": "--description",
    "attempt_deadline": "--attempt-deadline",
    "http_target.uri": "--uri",
    OIDC[0]: "--oidc-service-account-email",
    OIDC[1]: "--oidc-token-audience",
    OAUTH[0]: "--oauth-service-account-email",
    OAUTH[1]: "--oauth-token-scope",
    "retry_config.retry_count": "--max-retry-attempts",
    "retry_config.min_backoff_duration": "--min-backoff",
    "retry_config.max_backoff_duration": "--max-backoff",
    "retry_config.max_doublings": "--max-doublings",
    "retry_config.max_retry_duration": "--max-retry-duration",
}


def dict_flag(pairs: dict[str, str]) -> str:
    """gcloud's KEY=VALUE,... list, with an alternate delimiter when a value holds a comma."""
    items = [f"{k}={v}" for k, v in pairs.items()]
    if not any("," in item for item in items):
        return ",".join(items)
    sep = next(c for c in ";|#~@!" if not any(c in item for item in items))
    return f"^{sep}^" + sep.join(items)


def flags(path: str, job: dict[str, Any], live: scheduler_v1.Job | None) -> list[str]:
    """The gcloud flags that set one field; `live` is None when creating."""
    target, values = job["http_target"], flat(job)
    for group in (OIDC, OAUTH):  # gcloud takes the audience/scope only with the account
        if path in group:
            return [f"{FLAGS[p]}={values[p]}" for p in group if values[p]]
    if path in FLAGS:
        return [f"{FLAGS[path]}={values[path]}"]
    if path == "http_target.http_method":
        return [f"--http-method={target['http_method'].lower()}"]
    if path == "http_target.body":
        if "body" in target:
            return [f"--message-body={target['body'].decode()}"]
        return [] if live is None else ["--clear-message-body"]
    if path == "http_target.headers":
        if live is None:
            return [f"--headers={dict_flag(target['headers'])}"]
        keep = {k.lower() for k in target["headers"]} | {"user-agent"}
        gone = [k for k in live.http_target.headers if k.lower() not in keep]
        remove = [f"--remove-headers={','.join(gone)}"] if gone else []
        return [*remove, f"--update-headers={dict_flag(target['headers'])}"]
    return []


def command(verb: list[str], spec: Spec, extra: list[str]) -> str:
    """A shell-quoted gcloud scheduler command for this spec's job."""
    head = ["gcloud", "scheduler", "jobs", *verb, spec.job.name]
    where = [f"--project={spec.project}", f"--location={spec.region}"]
    return shlex.join([*head, *where, *dict.fromkeys(extra)])


def _no_gcloud(job: dict[str, Any]) -> str | None:
    """gcloud's --http-method has no PATCH (gcp-facts §6): say so instead of a broken command."""
    method = job["http_target"]["http_method"]
    if method in GCLOUD_METHODS:
        return None
    return f"# gcloud cannot set --http-method={method.lower()}; opslib uses the Scheduler API"


def create_command(spec: Spec, job: dict[str, Any]) -> str:
    """The `gcloud scheduler jobs create http` command equivalent to creating the job."""
    unset = flat(scheduler_v1.Job())  # Google's retry defaults: gcloud need not repeat them
    extra: list[str] = []
    for path, value in flat(job).items():
        default = path.startswith("retry_config.") and value == unset[path]
        if value not in ("", None) and not default:
            extra += flags(path, job, None)
    return _no_gcloud(job) or command(["create", "http"], spec, extra)


def update_command(
    spec: Spec, job: dict[str, Any], live: scheduler_v1.Job, fields: tuple[str, ...]
) -> str:
    """The `gcloud scheduler jobs update http` command that changes exactly `fields`."""
    extra = [flag for path in fields for flag in flags(path, job, live)]
    return _no_gcloud(job) or command(["update", "http"], spec, extra)
