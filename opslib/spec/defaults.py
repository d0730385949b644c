"""Google's defaults: what a live resource means when it leaves a field unset.

A live job or service that omits a field runs with Google's default, so a diff, a page and a
check that read it must all fill in the same value (gcp-facts.md §1, §2; Cloud Run's
task-timeout and max-retries pages for jobs). Each default is written once, here.
"""

from __future__ import annotations

# Cloud Scheduler (HTTP target)
ATTEMPT_DEADLINE = 180.0  # seconds, when attemptDeadline is unset
TIME_ZONE = "Etc/UTC"  # no zone, `utc` and `Etc/UTC` are the same to Scheduler
RETRY: dict[str, float] = {  # RetryConfig, by the Python client's field names
    "retry_count": 0,
    "min_backoff_duration": 5.0,
    "max_backoff_duration": 3600.0,
    "max_doublings": 5,
    "max_retry_duration": 0.0,  # 0 = unlimited
}
OAUTH_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
HTTP_METHOD = "POST"  # HTTP_METHOD_UNSPECIFIED means POST

# Cloud Run (services and jobs)
REQUEST_TIMEOUT = 300.0  # seconds, a service's template.timeout when unset
CPU = "1"
MEMORY = "512Mi"
MAX_INSTANCES = 100
TASK_TIMEOUT = 600.0  # seconds, a Cloud Run job task's timeout when unset
TASK_MAX_RETRIES = 3
TASK_COUNT = 1


def time_zone(name: str) -> str:
    """Scheduler's spellings of UTC as one name, so only a real change of zone differs."""
    return TIME_ZONE if name.lower() in ("", "utc", "etc/utc") else name


def concurrency(cpu: float) -> int:
    """maxInstanceRequestConcurrency 0: 80 with a whole CPU or more, 1 below (gcp-facts §2)."""
    return 80 if cpu >= 1 else 1
