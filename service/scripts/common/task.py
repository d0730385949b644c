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
from collections.abc import Callable
from typing import Any

from scripts.common import logs


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


def run_task(job: str, target: Callable[..., Any] | type) -> int:
    """Run this task's share; 0 when it finished, 1 when it raised (Cloud Run retries it)."""
    logs.setup()
    logger = logging.getLogger(job)
    index, count = shard()
    with logs.job_run(job, logger) as run:
        execution = os.environ.get("CLOUD_RUN_EXECUTION")
        if execution:  # one id per task attempt that names the execution it belongs to
            run.run_id = f"{execution}-{index}-{os.environ.get('CLOUD_RUN_TASK_ATTEMPT', '0')}"
        logger.info("=== %s task %d of %d started ===", job, index, count)
        try:
            result = _call(target, index, count)
        except Exception as exc:
            run.failed(exc)
            return 1
        run.succeeded(result)
        return 0
