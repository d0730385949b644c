"""Cloud Run job tasks: the container entry point of a job module (`python -m scripts.batch.X`).

A job runs as N tasks; Cloud Run gives each its index and the count (CLOUD_RUN_TASK_INDEX,
CLOUD_RUN_TASK_COUNT), so a job takes its share of the work by index. Each task logs the same
JSON fields as a service route (job, run_id, status, processed, errors, duration_ms), so
verify and the doctor read both runtimes alike, and exits non-zero on failure, which is what
makes Cloud Run retry the task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import requests

from scripts.common import logs

RUN_API = "https://run.googleapis.com"


def shard() -> tuple[int, int]:
    """(this task's index, the number of tasks); (0, 1) when run by hand."""
    return int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0")), int(
        os.environ.get("CLOUD_RUN_TASK_COUNT", "1")
    )


def _dry_run() -> bool:
    return os.environ.get("DRY_RUN", "").lower() in ("1", "true", "yes")


def _call(target: Callable[..., Any] | type, index: int, count: int) -> Any:
    """A function-pattern job is called; a class-pattern job's async run() is awaited."""
    kwargs = {"dry_run": _dry_run(), "task_index": index, "task_count": count}
    if inspect.isclass(target):
        test_mode = os.environ.get("TEST_MODE", "").lower() in ("1", "true", "yes")
        return asyncio.run(target(test_mode=test_mode).run(**kwargs))
    return target(**kwargs)


def _earlier_running(logger: logging.Logger) -> str | None:
    """Another execution of this job, started before ours, still running (overlap: skip).

    Cloud Run starts an execution on every `:run`, even while one runs, so the job checks its
    own executions through the Run Admin API with its identity's token (the metadata server's,
    as scripts/common/secrets.py does). OPSLIB_OVERLAP and OPSLIB_REGION are set by opslib's
    deploy; any error lets the task run (the guard must never be why work does not happen).
    """
    execution = os.environ.get("CLOUD_RUN_EXECUTION")
    mode = os.environ.get("OPSLIB_OVERLAP", "allow")
    if mode == "allow" or not execution:
        return None
    try:
        earlier = _running_before(execution)
        while earlier and mode == "queue":  # wait for it; the task timeout bounds the wait
            logger.info("queued behind execution %s", earlier, extra={"status": "queued"})
            time.sleep(5)
            earlier = _running_before(execution)
        return earlier
    except Exception as exc:  # any failure of the check: run unguarded
        logger.warning("overlap check unavailable, running anyway: %s", exc)
        return None


def _running_before(execution: str) -> str | None:
    from scripts.common.secrets import _metadata, _token

    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or _metadata("project/project-id").text
    base = os.environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", RUN_API).rstrip("/")
    job, region = os.environ["CLOUD_RUN_JOB"], os.environ["OPSLIB_REGION"]
    url = f"{base}/v2/projects/{project}/locations/{region}/jobs/{job}/executions"
    answer = requests.get(url, headers={"Authorization": f"Bearer {_token()}"}, timeout=10)
    answer.raise_for_status()
    executions = answer.json().get("executions", [])
    mine = next((e for e in executions if e["name"].endswith(f"/{execution}")), None)
    for other in executions:
        running = not other.get("completionTime") and other is not mine
        if running and mine and other.get("createTime", "") < mine.get("createTime", ""):
            return other["name"].rsplit("/", 1)[-1]
    return None


def run_task(job: str, target: Callable[..., Any] | type) -> int:
    """Run this task's share; 0 when it finished, 1 when it raised (Cloud Run retries it)."""
    logs.setup()
    logger = logging.getLogger(job)
    index, count = shard()
    with logs.job_run(job, logger) as run:
        execution = os.environ.get("CLOUD_RUN_EXECUTION")
        if execution:  # one id per task attempt that names the execution it belongs to
            run.run_id = f"{execution}-{index}-{os.environ.get('CLOUD_RUN_TASK_ATTEMPT', '0')}"
        earlier = _earlier_running(logger)
        if earlier:
            logger.info(
                "skipped: execution %s of %s is still running (overlap: skip)",
                earlier,
                job,
                extra={"status": "skipped"},
            )
            return 0
        logger.info("=== %s task %d of %d started ===", job, index, count)
        try:
            result = _call(target, index, count)
        except Exception as exc:
            run.failed(exc)
            return 1
        run.succeeded(result)
        return 0
