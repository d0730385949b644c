"""What a cron choice means before it is saved: sentences, next runs, warnings, the change.

Pure logic for the cron picker (`opslib.notebook.widgets`) and its text rendering under
papermill. The rules are `opslib.spec.cron`'s (same messages); this module adds what people need
to see before they commit to a schedule:

- a description in English and Korean, 24-hour clock; cron-descriptor's ko_KR leaves weekday
  and month names in English, so they are replaced (월요일..일요일, 1월..12월);
- the next runs on the job's wall clock;
- warnings: runs that fall in a DST gap (the hour does not exist that day) or overlap (the hour
  happens twice) within the next year, since Cloud Scheduler fires on wall-clock time and
  Google documents execution anomalies there and recommends UTC (gcp-facts §1); and the
  day-of-month / day-of-week OR rule, when both fields are restricted;
- the change against the schedule in the parameters file.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from zoneinfo import ZoneInfo

from cronsim import CronSim

from opslib.spec import cron
from opslib.spec.rules import RuleBroken


@dataclass(frozen=True)
class Preset:
    """One of the seed's frequent schedules ("자주 쓰는 cron")."""

    cron: str
    ko: str
    en: str

    @property
    def label(self) -> str:
        return f"{self.cron} · {self.ko} ({self.en})"


PRESETS = (
    Preset("*/30 * * * *", "30분마다", "every 30 minutes"),
    Preset("0 */4 * * *", "4시간마다", "every 4 hours"),
    Preset("0 9 * * 1-5", "평일 09:00", "weekdays 09:00"),
    Preset("0 8 * * 2-6", "화~토 08:00", "Tuesday to Saturday 08:00"),
    Preset("0 0 1,15 * *", "매월 1일, 15일", "the 1st and the 15th"),
)
KO_WEEKDAYS = ("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일")
_KO_DAY = "월화수목금토일"
_EN_DAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HORIZON = timedelta(days=366)  # how far ahead DST gaps and overlaps are looked for
_SHOWN_TIMES = 4


@dataclass(frozen=True)
class Issue:
    """A rule the choice breaks: the key, opslib.spec.cron's rule and its fix."""

    key: str
    rule: str
    fix: str


@dataclass(frozen=True)
class CronWarning:
    """Something valid that may still surprise: kind is dst-gap, dst-overlap or or-rule."""

    kind: str
    message: str
    fix: str


@dataclass(frozen=True)
class CronReport:
    """Everything the picker shows for one (cron, time zone) choice."""

    cron: str
    time_zone: str
    errors: tuple[Issue, ...] = ()
    description_en: str = ""
    description_ko: str = ""
    next_runs: tuple[datetime, ...] = ()
    warnings: tuple[CronWarning, ...] = ()
    before: CronReport | None = None  # the schedule in the parameters file, when given

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        """True when there is no current schedule or the choice differs from it."""
        return self.before is None or (self.cron, self.time_zone) != (
            self.before.cron,
            self.before.time_zone,
        )


def report(
    expr: str,
    time_zone: str,
    current: tuple[str, str] | None = None,
    *,
    count: int = cron.NEXT_RUNS,
    start: datetime | None = None,
) -> CronReport:
    """The report for `expr` in `time_zone`, compared with `current` (cron, zone) if given."""
    start = start or datetime.now(UTC)
    expr, time_zone = " ".join(str(expr).split()), str(time_zone).strip()
    before = report(*current, count=count, start=start) if current else None
    errors = _errors(expr, time_zone)
    cron_ok = not any(issue.key == "schedule.cron" for issue in errors)
    en, ko = (describe_en(expr), describe_ko(expr)) if cron_ok else ("", "")
    if errors:
        return CronReport(expr, time_zone, errors, en, ko, before=before)
    runs = tuple(cron.next_runs(expr, time_zone, count, start))
    warnings = (*dst_warnings(expr, time_zone, start), *or_rule_warnings(expr))
    return CronReport(expr, time_zone, (), en, ko, runs, tuple(warnings), before)


def _errors(expr: str, time_zone: str) -> tuple[Issue, ...]:
    issues = []
    for key, check, value in (
        ("schedule.cron", cron.validate, expr),
        ("schedule.time_zone", cron.validate_time_zone, time_zone),
    ):
        try:
            check(value)
        except RuleBroken as broken:
            issues.append(Issue(key, broken.rule, broken.fix))
    return tuple(issues)


# --- descriptions ---------------------------------------------------------------------------


def describe_en(expr: str) -> str:
    """The English sentence, 24-hour clock."""
    return cron.describe(expr)


def describe_ko(expr: str) -> str:
    """The Korean sentence, with the weekday and month names cron-descriptor leaves in English."""
    return _koreanize(cron.describe(expr, "ko_KR"))


def _koreanize(text: str) -> str:
    # cron-descriptor takes the names from `calendar`, so map them by index, whatever the locale.
    names = {calendar.day_name[i]: KO_WEEKDAYS[i] for i in range(7)}
    names |= {calendar.month_name[m]: f"{m}월" for m in range(1, 13)}
    # Not \b: Korean particles follow the name directly ("Monday에"), and they are word letters.
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z])")
    return pattern.sub(lambda match: names[match.group(1)], text)


def format_run(when: datetime) -> str:
    """A run time as people read it: date, weekday in Korean and English, time, zone, offset."""
    day = when.weekday()
    offset = when.isoformat()[-6:] if when.utcoffset() else "+00:00"
    return f"{when:%Y-%m-%d} ({_KO_DAY[day]} {_EN_DAY[day]}) {when:%H:%M} {when.tzname()} {offset}"


# --- warnings -------------------------------------------------------------------------------


def or_rule_warnings(expr: str) -> list[CronWarning]:
    """Both day fields restricted: unix-cron runs when either matches (cronsim's test, too)."""
    fields = expr.split()
    dom, dow = fields[2], fields[4]
    if dom.startswith("*") or dow.startswith("*"):
        return []
    return [
        CronWarning(
            "or-rule",
            f"day-of-month ({dom}) and day-of-week ({dow}) are both restricted, so unix-cron runs "
            f"on every day that matches EITHER field, not only on days that match both: "
            f"{describe_en(expr)}",
            "to require both, keep one of the two fields as * and check the other in the job; "
            "if either is what you want, nothing to change",
        )
    ]


def dst_warnings(expr: str, time_zone: str, start: datetime) -> list[CronWarning]:
    """Runs within a year of `start` whose wall-clock time is skipped or repeated by a shift."""
    zone = cron.zone_info(time_zone)
    found = []
    for instant, before, after in offset_changes(zone, start, start + HORIZON):
        old_wall = (instant + before).replace(tzinfo=None)
        new_wall = (instant + after).replace(tzinfo=None)
        gap = after > before
        low, high = (old_wall, new_wall) if gap else (new_wall, old_wall)
        times = wall_matches(expr, low, high)
        if times:
            found.append(_dst_warning(time_zone, gap, low, high, times))
    return found


def _dst_warning(
    time_zone: str, gap: bool, low: datetime, high: datetime, times: list[datetime]
) -> CronWarning:
    window = f"{low:%H:%M}-{high:%H:%M}"
    runs = _times(times)
    fix = (
        f"schedule outside {window} local time, or use time_zone: Etc/UTC "
        f"(Google recommends UTC for Cloud Scheduler: no DST)"
    )
    if gap:
        message = (
            f"DST gap: on {low:%Y-%m-%d} {time_zone} skips {window} (clocks go forward), so the "
            f"run(s) at {runs} fall in an hour that does not exist that day; Cloud Scheduler "
            f"fires on wall-clock time and may not run them"
        )
        return CronWarning("dst-gap", message, fix)
    message = (
        f"DST overlap: on {low:%Y-%m-%d} {time_zone} repeats {window} (clocks go back), so the "
        f"run(s) at {runs} fall in an hour that happens twice; Cloud Scheduler fires on "
        f"wall-clock time and Google warns of execution anomalies there (a run may happen twice)"
    )
    return CronWarning("dst-overlap", message, fix)


def _times(times: list[datetime]) -> str:
    shown = ", ".join(f"{t:%H:%M}" for t in times[:_SHOWN_TIMES])
    return shown if len(times) <= _SHOWN_TIMES else f"{shown}, … ({len(times)} runs)"


def offset_changes(
    zone: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, timedelta, timedelta]]:
    """Each (instant in UTC, offset before, offset after) at which `zone` changes its offset."""
    changes = []
    step, low = timedelta(days=1), start.astimezone(UTC)
    end = end.astimezone(UTC)
    before = _offset(zone, low)
    while low < end:
        high = min(low + step, end)
        after = _offset(zone, high)
        if after != before:
            changes.append((_first_with(zone, low, high, after), before, after))
        low, before = high, after
    return changes


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _first_with(zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta) -> datetime:
    """The first whole second in (low, high] at which the zone has `offset` (bisection)."""
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def wall_matches(expr: str, low: datetime, high: datetime) -> list[datetime]:
    """Naive wall-clock times in [low, high) that `expr` matches (no zone, no DST handling)."""
    runs = CronSim(expr, low - timedelta(seconds=1))
    return list(takewhile(lambda when: when < high, runs))


# --- text -----------------------------------------------------------------------------------


def to_text(rep: CronReport) -> str:
    """The report as plain text: what papermill and a frontend without widgets show."""
    lines = [f"schedule: {rep.cron or '(empty)'} ({rep.time_zone})"]
    for issue in rep.errors:
        lines += [f"error: {issue.key}: {issue.rule}", f"  fix: {issue.fix}"]
    if rep.description_en:
        lines += [f"  ko: {rep.description_ko}", f"  en: {rep.description_en}"]
    if rep.next_runs:
        lines.append(f"next runs ({rep.time_zone}):")
        lines += [f"  {format_run(t)}" for t in rep.next_runs]
    for warning in rep.warnings:
        lines += [f"warning: {warning.message}", f"  fix: {warning.fix}"]
    lines += change_lines(rep)
    return "\n".join(lines)


def change_lines(rep: CronReport) -> list[str]:
    """The change against the current schedule, old next to new."""
    old = rep.before
    if old is None:
        return []
    if not rep.changed:
        return [f"change: none (the parameters file has {old.cron} in {old.time_zone})"]
    lines = [f"change: {old.cron} ({old.time_zone}) -> {rep.cron} ({rep.time_zone})"]
    lines.append(f"  before: {old.description_en or '-'} / {old.description_ko or '-'}")
    lines.append(f"  after:  {rep.description_en or '-'} / {rep.description_ko or '-'}")
    lines.append(f"  next before: {_first_runs(old)}")
    lines.append(f"  next after:  {_first_runs(rep)}")
    return lines


def _first_runs(rep: CronReport) -> str:
    return ", ".join(format_run(t) for t in rep.next_runs[:3]) or "- (not valid)"
