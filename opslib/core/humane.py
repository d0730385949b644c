"""Values as a person reads them, in one vocabulary for every page: times on the job's clock
(`2026-12-08 09:00 KST`), durations in human units (`246 ms`, `1 m 05 s`), booleans as yes/no,
text without terminal colour codes. `display` uses these for every table and banner; the
doctor and the status page use the same ones, so no page says a fact its own way.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import pandas as pd

TIME_FORMAT = "%Y-%m-%d %H:%M %Z"  # minutes are enough to read; run ids tell runs apart
YES, NO = "yes", "no"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # CSI sequences: colours, bold, cursor moves
# Columns holding a duration, and the unit their numbers are in.
DURATION_UNITS = {"_ms": 0.001, "_s": 1.0, "_seconds": 1.0}
DURATION_NAMES = {"latency": 1.0, "duration": 1.0, "seconds": 1.0, "elapsed": 1.0}


def when(value: Any, time_zone: str | None = None) -> str:
    """`2026-12-08 09:00 KST`: on `time_zone` (the job's) when the value knows its own zone."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None and time_zone:
        stamp = stamp.tz_convert(time_zone)
    return stamp.strftime(TIME_FORMAT).strip()


def duration(seconds: float | None) -> str:
    """`246 ms`, `4.2 s`, `38 s`, `1 m 05 s`, `2 h 03 m`; "" for a missing value."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} m"


def duration_unit(column: object) -> float | None:
    """Seconds per unit when `column` holds durations by its name (`duration_s`, `latency`)."""
    name = str(column).lower()
    if name in DURATION_NAMES:
        return DURATION_NAMES[name]
    return next((unit for end, unit in DURATION_UNITS.items() if name.endswith(end)), None)


def duration_header(column: object) -> str:
    """`duration_s` -> `duration`: the unit is in each value now."""
    name = str(column)
    for end in DURATION_UNITS:
        if name.lower().endswith(end):
            return name[: -len(end)]
    return name


def yes_no(value: bool) -> str:
    return YES if value else NO


def plain(text: str) -> str:
    """The text without terminal escape sequences (pytest's colours, for one)."""
    return ANSI.sub("", text)


def is_time(value: Any) -> bool:
    return isinstance(value, datetime | pd.Timestamp)
