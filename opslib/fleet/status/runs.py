"""The jobs' end lines as Cloud Logging returns them (JSON): whose run each is, and its columns.

As `read_runs` pages through them, `keep` holds each job's newest run (a Cloud Run job's:
every task's line of its newest execution); `run_columns` turns those lines into the row's
last_run, run_status, duration_s, processed and errors (the fields
service/scripts/common/logs.py writes). Lines stay plain dicts: parsing them into a frame
would cost more than the whole table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opslib.spec.model import Spec

Key = tuple[Any, ...]  # (project, region, service or Cloud Run job, job): a line's automation
EXECUTION_LABEL = "run.googleapis.com/execution_name"  # on a Cloud Run job's log entries
TASK_LABEL = "run.googleapis.com/task_index"


def key_of(spec: Spec) -> Key:
    """Where a spec's end lines come from: its service, or its own Cloud Run job."""
    resource = spec.service if spec.job.effective_runtime == "service" else spec.job.name
    return (spec.project, spec.region, resource, spec.job.name)


def keep(newest: dict[Key, list[dict[str, Any]]], entry: dict[str, Any]) -> None:
    """Lines come newest first: a job's first line is its last run; a Cloud Run job's other
    lines of that same execution (its other tasks) join it."""
    lines = newest.setdefault(_key(entry), [])
    execution = _entry_labels(entry).get(EXECUTION_LABEL)
    if not lines or (execution and _entry_labels(lines[0]).get(EXECUTION_LABEL) == execution):
        lines.append(entry)


def _key(entry: Any) -> Key:
    labels = _labels(entry)
    return (
        labels.get("project_id"),
        labels.get("location"),
        labels.get("service_name") or labels.get("job_name"),
        _payload(entry).get("job"),
    )


def _labels(entry: Any) -> dict[str, Any]:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    labels = resource.get("labels") if isinstance(resource, dict) else None
    return labels if isinstance(labels, dict) else {}


def _payload(entry: Any) -> dict[str, Any]:
    payload = entry.get("jsonPayload") if isinstance(entry, dict) else None
    return payload if isinstance(payload, dict) else {}


def _entry_labels(entry: Any) -> dict[str, Any]:
    labels = entry.get("labels") if isinstance(entry, dict) else None
    return labels if isinstance(labels, dict) else {}


def run_columns(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The run columns from a run's end lines (the fields service/scripts/common/logs.py
    writes): one line for a route, each task's newest for a Cloud Run job (summed; the
    slowest task's duration; error when any task's last attempt failed). last_run is in UTC:
    the row puts it on the job's clock."""
    tasks: dict[object, dict[str, Any]] = {}
    for entry in lines:
        tasks.setdefault(_entry_labels(entry).get(TASK_LABEL), entry)
    payloads = [_payload(e) for e in tasks.values()]
    statuses = [p.get("status") for p in payloads if isinstance(p.get("status"), str)]
    durations = [d for p in payloads if (d := _number(p.get("duration_ms"))) is not None]
    return {
        "last_run": _parse_time(lines[0].get("timestamp") if lines else None),
        "run_status": "error" if "error" in statuses else (statuses[0] if statuses else None),
        "duration_s": max(durations) / 1000 if durations else None,
        "processed": _sum(p.get("processed") for p in payloads),
        "errors": _sum(p.get("errors") for p in payloads),
    }


def _sum(values: Iterable[object]) -> int | None:
    """The whole numbers among `values` added up; None when there is none."""
    counts = [n for v in values if (n := _whole(v)) is not None]
    return sum(counts) if counts else None


def _parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp (nanoseconds cut to micro), None when absent or unreadable."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _number(value: object) -> float | None:
    """A JSON number (or an int64 sent as a string) as a finite float, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _whole(value: object) -> int | None:
    """A count: whole numbers only (JSON numbers arrive as doubles, int64 as strings)."""
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None
