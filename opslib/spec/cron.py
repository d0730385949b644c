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

from opslib.spec.rules import RuleBroken, suggest

# How many next run times every page shows (check, step 4, the picker, status): one setting.
NEXT_RUNS = 5
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
            f"got {len(fields)} field(s){hint}; {FORMAT_RULE}", f"write 5 fields, e.g. {EXAMPLE}"
        )
    for text, (name, allowed) in zip(fields, FIELDS, strict=True):
        for part in text.split(","):
            if not _FIELD_SYNTAX.fullmatch(part):
                raise RuleBroken(
                    f"the {name} field {text!r} is not valid; {FORMAT_RULE}",
                    f"use {allowed} in the {name} field, e.g. {EXAMPLE}",
                )
    try:
        CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError as exc:
        name, allowed = _field_of(str(exc))
        raise RuleBroken(
            f"{exc}: the {name} field is out of range or never matches; {FORMAT_RULE}",
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


def next_runs(expr: str, time_zone: str, count: int | None = None, start: datetime | None = None):
    """The next `count` run times (NEXT_RUNS by default), aware, in the job's zone."""
    count = NEXT_RUNS if count is None else count
    return list(islice(iter_runs(expr, time_zone, start), count))


def describe(expr: str, locale: str = "en_US") -> str:
    """A sentence for people, 24-hour clock: cron-descriptor's, with the everyday shapes said
    the way people say them ("every day", "매일", "every hour at :15", "5분마다")."""
    options = Options()
    options.locale_code = locale
    options.use_24hour_time_format = True
    text = ExpressionDescriptor(expr, options).get_description().strip()
    korean = locale.startswith("ko")
    if korean:  # "1 그리고 15일" reads as a list: "1, 15일"; "매 10분마다" as "10분마다"
        text = _KO_EVERY.sub(r"\1\2마다", text.replace(" 그리고 ", ", "))
    shaped = _shape(expr.split(), text, korean)
    if shaped is not None:
        return shaped
    # cron-descriptor's Korean adds "매시마다" (every hour) after any minute clause.
    return text.removesuffix(", 매시마다") if korean else text


_NUMBER = re.compile(r"\d+")
_FIXED = re.compile(r"[\d,-]+")  # a fixed set of hours: 9, 9-17, 9,18
_KO_EVERY = re.compile(r"매 (\d+)(분|시간)마다")
_SPAN = re.compile(r"(\d+)-(\d+)")  # one range of hours: 9-17


def _shape(fields: list[str], text: str, korean: bool) -> str | None:
    """The common every-day shapes cron-descriptor leaves without a day ('At 02:30')."""
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        return None
    minute, hour = fields[0], fields[1]
    if minute == "*" and hour == "*":
        return "매분" if korean else "Every minute"
    if minute.startswith("*/") and _NUMBER.fullmatch(minute[2:]) and hour == "*":
        n = int(minute[2:])
        return f"{n}분마다" if korean else f"Every {n} minutes"
    if not _NUMBER.fullmatch(minute):
        return _every_day(text, korean) if _FIXED.fullmatch(hour) else None
    m = int(minute)
    if hour == "*":
        if korean:
            return "매시간 정각" if m == 0 else f"매시간 {m}분"
        return "Every hour, on the hour" if m == 0 else f"Every hour, at {m} minutes past"
    if hour.startswith("*/") and _NUMBER.fullmatch(hour[2:]):
        n = int(hour[2:])
        if korean:
            return f"{n}시간마다 정각" if m == 0 else f"{n}시간마다 {m}분"
        return (
            f"Every {n} hours, on the hour" if m == 0 else f"Every {n} hours, at {m} minutes past"
        )
    span = _SPAN.fullmatch(hour)
    if span:
        first, last = (f"{int(h):02}:{m:02}" for h in span.groups())
        if korean:
            return f"매일 {first}부터 {last}까지 매시간"
        return f"Every hour from {first} to {last}, every day"
    return _every_day(text, korean) if _FIXED.fullmatch(hour) else None


def _every_day(text: str, korean: bool) -> str:
    return f"매일 {text}" if korean else f"{text}, every day"


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
