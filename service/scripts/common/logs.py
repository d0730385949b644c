"""Structured logs: one JSON object per line on stdout, lifted by Cloud Logging into jsonPayload.

`severity` and `message` are Cloud Logging's special fields; `job`, `run_id`, `processed`,
`errors` and `duration_ms` let opslib's verify step and dashboards read a run from its logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_RUN: contextvars.ContextVar[JobRun | None] = contextvars.ContextVar("opslib_run", default=None)
_EXTRA_FIELDS = ("processed", "errors", "duration_ms", "status", "attempt", "wait_s", "url")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with Cloud Logging's field names."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{''.join(traceback.format_exception(*record.exc_info))}"
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": str(record.lineno),
                "function": record.funcName,
            },
        }
        run = _RUN.get()
        if run is not None:
            entry["job"], entry["run_id"] = run.job, run.run_id
        for field in _EXTRA_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: int = logging.INFO) -> None:
    """Route every logger (the app's, the jobs', gunicorn's) to JSON lines on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "werkzeug"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class JobRun:
    """One execution of a job: its id, its clock, and the log lines that close it."""

    def __init__(self, job: str, logger: logging.Logger) -> None:
        self.job, self.logger = job, logger
        self.run_id = uuid.uuid4().hex[:16]
        self.started = time.perf_counter()

    def duration_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def succeeded(self, result: object) -> None:
        counts = result if isinstance(result, dict) else {}
        self.logger.info(
            "%s finished: %s",
            self.job,
            result,
            extra={
                "status": "success",
                "processed": counts.get("processed", counts.get("count")),
                "errors": counts.get("errors", 0),
                "duration_ms": self.duration_ms(),
            },
        )

    def failed(self, exc: BaseException) -> None:
        self.logger.error(
            "%s failed: %s: %s",
            self.job,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={"status": "error", "errors": 1, "duration_ms": self.duration_ms()},
        )


@contextmanager
def job_run(job: str, logger: logging.Logger) -> Iterator[JobRun]:
    """Tag every log line inside with the job name and a fresh run id."""
    run = JobRun(job, logger)
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)
