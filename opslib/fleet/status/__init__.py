"""`opslib status`: every automation of a fleet in one table, the page an operator opens daily.

It only reads, in a number of calls that does not grow with the number of route jobs: per
location (project, region) one Scheduler `jobs:list`, plus one Cloud Run `services:list` when
route jobs run there and one Cloud Run `jobs:list` when `runtime: job` automations do; one IAM
`getIamPolicy` per service and per Cloud Run job (the invokers step 3 grants); and one Logging
`entries:list` per target over the whole fleet, filtered down to the jobs' own end lines
(`status`, `processed`, `errors`, `duration_ms`: service/scripts/common/logs.py and task.py).
The calls run side by side, so on Google Cloud, where each is a network round trip, the table
costs about the slowest of them. Cloud Logging allows about 60 `entries:list` calls a minute
per project: a status a minute fits, however many jobs. Only when the newest 1,000 end lines
miss a job is a further page read (at most `read.LOG_PAGES` in all).
benchmarks/fleet_status.py times it for 50 automations against one jobs:list plus one
entries:list (official clients).

One row per automation, columns `COLUMNS`:
- service, job, health (below), state: enabled, paused, disabled, update_failed (Scheduler's
  word), or missing when the Scheduler job or what it calls (the Cloud Run service; for
  `runtime: job`, the Cloud Run job) does not exist;
- cron with cron_ko / cron_en, time_zone: the live job's (what actually fires); the file's when
  the job is missing;
- next_run: Scheduler's scheduleTime on the job's wall clock (from the cron when Scheduler gives
  none); NaT when the job will not fire (paused, disabled, missing);
- last_attempt, last_status: Scheduler's last attempt (OK, INTERNAL: message, or never ran);
- last_run, run_status, duration_s, processed, errors: the job's newest run in the logs of the
  window `since` (a Cloud Run job's: its newest execution, each task's last attempt added up);
  empty when it has none there;
- revision: the revision serving the service (each with its share when traffic is split); for
  a Cloud Run job, its newest execution;
- drift: every field step 3 or 4 would change if it ran now, as `field: live -> file`, joined
  by "; " (`drift`): the steps' own diffs, so status and the plans cannot disagree. The
  Scheduler job's fields by update-mask path; the service's (as all its route jobs ask for it:
  `fleet.load.service_spec`) or the Cloud Run job's (`job_spec`) image (the service folder as
  it is now), routes, resources, env (names only) and secrets; the invoker accounts;
- incidents: the automation's open Cloud Monitoring incidents (`failed since ...`, on the
  job's clock), read with one `alerts.list` per project when some spec has `alerts:`.

Health, one word per row, the worst that applies:
  missing  no Scheduler job, or nothing for it to call: the automation does not run;
  failed   Scheduler's last attempt was not OK, the newest run in the logs ended in error or
           counted errors (verify's rule), a Cloud Run job's newest execution failed, or
           Scheduler disabled the job or failed to update it;
  drifted  the file and Google differ (run steps 3-4 to apply the file, or fix the file);
  paused   someone paused the job (opslib schedule PARAMS pause, deploy --prune): not a fault;
  ok       none of the above.
`healthy()` holds when every row is ok or paused; `opslib status` exits 0 then, 1 otherwise.

The parts: `read` (the calls), `runs` (the end lines' run columns),
`drift` (file against Google), `rows` (one row and its health) and `view`
(verdict, colours, text). Their public names stay importable from here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opslib.fleet.status.read import Live, log_filter, read_live, read_runs
from opslib.fleet.status.rows import automation_row, describe, health, service_row
from opslib.fleet.status.runs import EXECUTION_LABEL, TASK_LABEL
from opslib.fleet.status.view import (
    COLOURS,
    HEALTHY,
    compact,
    healthy,
    page,
    styled,
    summary,
    to_text,
    verdict,
    worst_first,
)
from opslib.steps import logs

if TYPE_CHECKING:
    from opslib.fleet.load import Fleet

# Kept importable from here: notebooks, tests and benchmarks use them as status.<name>.
__all__ = [
    "COLOURS",
    "COLUMNS",
    "EXECUTION_LABEL",
    "HEALTHY",
    "TASK_LABEL",
    "Live",
    "compact",
    "describe",
    "health",
    "healthy",
    "log_filter",
    "page",
    "read_live",
    "read_runs",
    "status",
    "styled",
    "summary",
    "table",
    "to_text",
    "verdict",
    "window_start",
    "worst_first",
]

COLUMNS = (
    "service",
    "job",
    "health",
    "state",
    "cron",
    "cron_ko",
    "cron_en",
    "time_zone",
    "next_run",
    "last_attempt",
    "last_status",
    "last_run",
    "run_status",
    "duration_s",
    "processed",
    "errors",
    "revision",
    "drift",
    "incidents",
)


def status(
    fleet: Fleet, since: str | timedelta | datetime = "24h", now: datetime | None = None
) -> pd.DataFrame:
    """One row per automation: how it is scheduled, how it last ran, and where it drifted."""
    live = read_live(fleet, window_start(since, now))
    services = {key: service_row(fleet, ss, live) for key, ss in fleet.services.items()}
    rows = [automation_row(s, services[s.spec.service_key], live) for s in fleet.sessions]
    return table(rows)


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as one DataFrame, built column by column with fixed dtypes.

    Times stay objects (each row is on its own job's clock), counts are nullable Int64.
    Per-row Python and one construction: for fifty rows, each pandas operation's fixed cost
    is what a vectorised pass would add.
    """
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in COLUMNS}
    for name in ("next_run", "last_attempt", "last_run"):
        columns[name] = pd.Series(columns[name], dtype=object)
    for name in ("processed", "errors"):
        columns[name] = pd.array(columns[name], dtype="Int64")
    columns["duration_s"] = np.array(columns["duration_s"], dtype="float64")
    return pd.DataFrame(columns)


def window_start(since: str | timedelta | datetime, now: datetime | None = None) -> datetime:
    """The start of the log window: a time, or a span (gcloud's --freshness: 1h, 24h, 7d) ago."""
    if isinstance(since, datetime):
        return since
    span = since if isinstance(since, timedelta) else logs.parse_freshness(since)
    return (now or datetime.now(UTC)) - span
