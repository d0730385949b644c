"""Cloud Scheduler's unix-cron: validation, next run times and descriptions.

cronsim does the parsing and the iteration (including the day-of-month / day-of-week OR rule
and DST); this module only adds what Scheduler rejects that cronsim accepts (`L`, `#`, `W`,
`?`, macros, six fields) and messages that name the field and its range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from cronsim import CronSim, CronSimError

from opslib.gcp_rules import RuleBroken, suggest

FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 or SUN-SAT, 7 is Sunday"),
)
_NAMES = r"JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT"
_FIELD_SYNTAX = re.compile(
    rf"(\*|[0-9]+|{_NAMES})(-([0-9]+|{_NAMES}))?(/[0-9]+)?", re.IGNORECASE | re.ASCII
)
FORMAT_RULE = (
    "Cloud Scheduler takes unix-cron: 5 fields, minute hour day-of-month month day-of-week, "
    "with *, a-b ranges, /n steps and , lists (no L, W, #, ? or seconds)"
)
EXAMPLE = '"0 9 * * 1-5" (weekdays 09:00)'


def validate(expr: str) -> None:
    """Raise RuleBroken unless Cloud Scheduler would accept `expr`."""
    fields = str(expr).split()
    if len(fields) != 5:
        hint = " (drop the seconds field)" if len(fields) == 6 else ""
        raise RuleBroken(
            f"{FORMAT_RULE}; got {len(fields)} field(s){hint}", f"write 5 fields, e.g. {EXAMPLE}"
        )
    for text, (name, allowed) in zip(fields, FIELDS, strict=True):
        for part in text.split(","):
            if not _FIELD_SYNTAX.fullmatch(part):
                raise RuleBroken(
                    f"{FORMAT_RULE}; the {name} field {text!r} is not valid",
                    f"use {allowed} in the {name} field, e.g. {EXAMPLE}",
                )
    try:
        CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError as exc:
        name, allowed = _field_of(str(exc))
        raise RuleBroken(
            f"{FORMAT_RULE}; the {name} field is out of range or never matches ({exc})",
            f"the {name} field takes {allowed}, e.g. {EXAMPLE}",
        ) from None


def _field_of(message: str) -> tuple[str, str]:
    for name, allowed in FIELDS:
        if name.replace("-", " ") in message.lower().replace("-", " "):
            return name, allowed
    return "schedule", "valid values"


def iter_runs(expr: str, time_zone: str, start: datetime | None = None) -> Iterator[datetime]:
    """Run times after `start`, on the wall clock of `time_zone`, as Scheduler fires them."""
    zone = zone_info(time_zone)
    start = (start or datetime.now(UTC)).astimezone(zone)
    return CronSim(expr, start)


def zone_info(time_zone: str) -> ZoneInfo:
    """The zone for a name Scheduler accepts; Scheduler takes `utc`, the tz database only `UTC`."""
    return ZoneInfo("UTC" if time_zone == "utc" else time_zone)


def next_runs(expr: str, time_zone: str, count: int = 5, start: datetime | None = None):
    """The next `count` run times, aware, in the job's zone."""
    return list(islice(iter_runs(expr, time_zone, start), count))


def describe(expr: str, locale: str = "en_US") -> str:
    """A sentence for people, 24-hour clock (cron-descriptor)."""
    options = Options()
    options.locale_code = locale
    options.use_24hour_time_format = True
    return ExpressionDescriptor(expr, options).get_description()


# Zone abbreviations people type, and the tz-database name Scheduler wants instead.
_ABBREVIATIONS = {
    "KST": "Asia/Seoul",
    "JST": "Asia/Tokyo",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu",
    "CET": "Europe/Berlin",
    "CEST": "Europe/Berlin",
    "EET": "Europe/Athens",
    "WET": "Europe/Lisbon",
    "MET": "Europe/Berlin",
    "BST": "Europe/London",
    "IST": "Asia/Kolkata",
    "SGT": "Asia/Singapore",
    "HKT": "Asia/Hong_Kong",
    "AEST": "Australia/Sydney",
    "EST5EDT": "America/New_York",
    "CST6CDT": "America/Chicago",
    "MST7MDT": "America/Denver",
    "PST8PDT": "America/Los_Angeles",
}
_ABBREVIATION = re.compile(r"[A-Z]{2,5}([0-9][A-Z]{3})?")
TIME_ZONE_RULE = (
    "Cloud Scheduler takes a tz-database name such as Asia/Seoul or Etc/UTC, "
    "not an abbreviation (KST, EST, PST8PDT)"
)


def validate_time_zone(name: str) -> None:
    """Raise RuleBroken unless Scheduler accepts `name` as the job's time zone."""
    text = str(name)
    if text in ("UTC", "utc", "GMT"):
        return
    suggestion = _ABBREVIATIONS.get(text.upper())
    if suggestion or _ABBREVIATION.fullmatch(text):
        fix = f"use time_zone: {suggestion or 'Area/City, e.g. Asia/Seoul'}"
        raise RuleBroken(f"{TIME_ZONE_RULE}; {text!r} is an abbreviation", fix)
    zones = available_timezones()
    if text not in zones:
        close = [z for z in zones if z.lower() == text.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else suggest(text, zones)
        raise RuleBroken(
            f"{TIME_ZONE_RULE}; {text!r} is not in the tz database{hint}",
            f"use time_zone: {close[0] if close else 'Asia/Seoul'} (any IANA zone name)",
        )
