"""Cloud Scheduler's rules as Google documents them: localcloud's own, never opslib's.

From gcp-facts.md §1 and the pages it cites:
- `schedule` is unix-cron (cloud.google.com/scheduler/docs/configuring/cron-job-schedules):
  five fields, minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week
  0-6 or SUN-SAT (7 is Sunday); each a list of `*`, values or ranges, with an optional `/step`.
  No `L`, `W`, `#`, `?`, macros or seconds field. cronsim reads the fields (ranges, names, the
  day-of-month / day-of-week OR rule, DST) and gives the run times; this module refuses first
  what cronsim takes and Scheduler does not.
- `timeZone` is a tz-database name (zoneinfo); `utc` is accepted too, and no zone means UTC.
- A bad schedule or zone is 400 `Schedule or time zone is invalid.` (google-cloud-go#1352,
  terraform-provider-google#31571).
- The location is one of Scheduler's locations.
- An HTTP target's `attemptDeadline` is 15s to 30 minutes, 180s by default.
- `retryConfig.retryCount` is 0 to 5 (default 0); the backoffs default to 5s and 1h, the
  doublings to 5, `maxRetryDuration` to 0 (unlimited).
- `description` is at most 500 characters; a job id is 1-500 letters, digits, `-` or `_`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

SCHEDULE_OR_ZONE = "Schedule or time zone is invalid."
# One element of a cron field's list: `*`, a value or a range, each with an optional step.
CRON_ELEMENT = re.compile(r"^(\*|[0-9]+|[A-Za-z]{3})(-([0-9]+|[A-Za-z]{3}))?(/[0-9]+)?$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
DESCRIPTION_MOST = 500
DEADLINE_DEFAULT, DEADLINE_LEAST, DEADLINE_MOST = 180.0, 15.0, 1800.0
RETRY_COUNT_MOST = 5
RETRY_DEFAULTS = {
    "retryCount": 0,
    "maxRetryDuration": "0s",
    "minBackoffDuration": "5s",
    "maxBackoffDuration": "3600s",
    "maxDoublings": 5,
}
# Cloud Scheduler's locations (cloud.google.com/scheduler/docs/locations), by area.
LOCATIONS = frozenset(
    f"{area}-{place}"
    for area, places in {
        "africa": ("south1",),
        "asia": (
            "east1 east2 northeast1 northeast2 northeast3 south1 south2 southeast1 southeast2"
        ).split(),
        "australia": ("southeast1", "southeast2"),
        "europe": (
            "central2 north1 north2 southwest1 west1 west2 west3 west4 west6 west8 west9 "
            "west10 west12"
        ).split(),
        "me": ("central1", "central2", "west1"),
        "northamerica": ("northeast1", "northeast2", "south1"),
        "southamerica": ("east1", "west1"),
        "us": "central1 east1 east4 east5 south1 west1 west2 west3 west4".split(),
    }.items()
    for place in places
)


class RuleError(ValueError):
    """A value Scheduler refuses; the message is what the API says."""


def zone(name: str | None) -> ZoneInfo:
    """The zone a job runs in: a tz-database name, `utc` (Scheduler takes it), or UTC."""
    text = name or "UTC"
    try:
        return ZoneInfo("UTC" if text.lower() == "utc" else text)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(SCHEDULE_OR_ZONE) from None


def check_schedule(expression: str) -> None:
    """Refuse a schedule Scheduler refuses (the cron syntax above)."""
    fields = str(expression).split()
    if len(fields) != 5:
        raise RuleError(SCHEDULE_OR_ZONE)
    for field in fields:
        if not all(CRON_ELEMENT.match(element) for element in field.split(",")):
            raise RuleError(SCHEDULE_OR_ZONE)
    try:
        CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError:
        raise RuleError(SCHEDULE_OR_ZONE) from None


def runs(expression: str, zone_name: str | None, start: datetime) -> Iterator[datetime]:
    """The run times after `start`, on the wall clock of the job's zone."""
    return CronSim(expression, start.astimezone(zone(zone_name)))
