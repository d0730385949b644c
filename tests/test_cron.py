"""Cron as Cloud Scheduler runs it: wall clock in the job's zone, the dom/dow OR rule, DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opslib.spec import cron
from opslib.spec.rules import RuleBroken

START = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)  # a Sunday


def stamps(expr: str, zone: str, count: int, start: datetime = START) -> list[str]:
    return [t.strftime("%a %Y-%m-%d %H:%M %z") for t in cron.next_runs(expr, zone, count, start)]


def test_weekdays_at_nine_in_seoul():
    runs = stamps("0 9 * * 1-5", "Asia/Seoul", 6)
    assert runs == [
        "Mon 2026-11-30 09:00 +0900",
        "Tue 2026-12-01 09:00 +0900",
        "Wed 2026-12-02 09:00 +0900",
        "Thu 2026-12-03 09:00 +0900",
        "Fri 2026-12-04 09:00 +0900",
        "Mon 2026-12-07 09:00 +0900",
    ]


def test_day_of_month_or_day_of_week_when_both_restricted():
    # Both fields restricted: runs on the 1st, the 15th, AND every Monday (unix-cron OR rule).
    runs = stamps("0 0 1,15 * 1", "Etc/UTC", 6)
    assert runs == [
        "Mon 2026-11-30 00:00 +0000",
        "Tue 2026-12-01 00:00 +0000",
        "Mon 2026-12-07 00:00 +0000",
        "Mon 2026-12-14 00:00 +0000",
        "Tue 2026-12-15 00:00 +0000",
        "Mon 2026-12-21 00:00 +0000",
    ]


def test_sunday_is_zero_or_seven_or_sun():
    assert stamps("0 9 * * 0", "UTC", 2) == stamps("0 9 * * 7", "UTC", 2)
    assert stamps("0 9 * * SUN", "UTC", 2) == stamps("0 9 * * 0", "UTC", 2)


def test_dst_gap_and_overlap_in_new_york():
    # 2027-03-14 02:30 does not exist in New York: the run moves to the first instant after the
    # gap (03:00 EDT), once. 2027-11-07 01:30 happens twice: the run fires once, at the first.
    spring = stamps("30 2 * * *", "America/New_York", 2, datetime(2027, 3, 13, 12, tzinfo=UTC))
    assert spring == ["Sun 2027-03-14 03:00 -0400", "Mon 2027-03-15 02:30 -0400"]
    autumn = stamps("30 1 * * *", "America/New_York", 2, datetime(2027, 11, 7, 4, tzinfo=UTC))
    assert autumn == ["Sun 2027-11-07 01:30 -0400", "Mon 2027-11-08 01:30 -0500"]


@pytest.mark.parametrize(
    "expr",
    [
        "0 9 * *",
        "0 0 9 * * *",
        "0 9 L * *",
        "0 9 * * 1#2",
        "0 9 ? * *",
        "0 9 15W * *",
        "60 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "@hourly",
        "0 9 * * MON-",
        "0 0 31 2 *",
    ],
)
def test_rejected(expr):
    with pytest.raises(RuleBroken):
        cron.validate(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "*/30 * * * *",
        "0 */4 * * *",
        "0 9 * * 1-5",
        "0 8 * * 2-6",
        "0 0 1,15 * *",
        "0-30/10 8-18 * * MON-FRI",
        "0 9 * jan,jul *",
        "15 14 1 * *",
        "0 22 * * 1-5",
    ],
)
def test_accepted(expr):
    cron.validate(expr)


def test_time_zone_rules():
    for good in ("Asia/Seoul", "UTC", "Etc/UTC", "America/Argentina/Buenos_Aires", "utc"):
        cron.validate_time_zone(good)
    for bad, hint in (
        ("KST", "Asia/Seoul"),
        ("JST", "Asia/Tokyo"),
        ("CET", "Europe/Berlin"),
        ("Asia/Seol", "Asia/Seoul"),
        ("Seoul", "Asia/Seoul"),
    ):
        with pytest.raises(RuleBroken) as info:
            cron.validate_time_zone(bad)
        assert hint in info.value.fix or hint in info.value.rule, (bad, info.value)


def test_description_is_24_hour():
    assert "09:00" in cron.describe("0 9 * * 1-5")
    assert "22:00" in cron.describe("0 22 * * *")


# The seed's presets, then common shapes: (cron, English, Korean), written by hand.
DESCRIPTIONS = [
    ("*/30 * * * *", "Every 30 minutes", "30분마다"),
    ("0 */4 * * *", "Every 4 hours, on the hour", "4시간마다 정각"),
    ("0 9 * * 1-5", "At 09:00, Monday through Friday", "09:00, 월요일~금요일"),
    ("0 8 * * 2-6", "At 08:00, Tuesday through Saturday", "08:00, 화요일~토요일"),
    ("0 0 1,15 * *", "At 00:00, on day 1 and 15 of the month", "00:00, 매월 1, 15일"),
    ("30 2 * * *", "At 02:30, every day", "매일 02:30"),
    ("0 0 * * *", "At 00:00, every day", "매일 00:00"),
    ("0 9,18 * * *", "At 09:00 and 18:00, every day", "매일 09:00, 18:00"),
    (
        "0 9-17 * * *",
        "Every hour from 09:00 to 17:00, every day",
        "매일 09:00부터 17:00까지 매시간",
    ),
    ("0 * * * *", "Every hour, on the hour", "매시간 정각"),
    ("15 * * * *", "Every hour, at 15 minutes past", "매시간 15분"),
    ("*/5 * * * *", "Every 5 minutes", "5분마다"),
    ("* * * * *", "Every minute", "매분"),
    ("30 */2 * * *", "Every 2 hours, at 30 minutes past", "2시간마다 30분"),
    (
        "*/10 9 * * *",
        "Every 10 minutes, between 09:00 and 09:59, every day",
        "매일 10분마다, 09:00부터 09:59까지",
    ),
    ("0 12 1 * *", "At 12:00, on day 1 of the month", "12:00, 매월 1일"),
]


@pytest.mark.parametrize(("expr", "english", "korean"), DESCRIPTIONS)
def test_descriptions_say_how_often_in_both_languages(expr, english, korean):
    from opslib.spec.cron_report import describe_en, describe_ko

    assert describe_en(expr) == english
    assert describe_ko(expr) == korean


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("61 9 * * *", "Bad minute"),
        ("0 9 * * 1#2", "the day-of-week field '1#2' is not valid"),
        ("0 0 9 * * 1-5", "got 6 field(s)"),
    ],
)
def test_an_invalid_cron_says_what_is_wrong_before_the_general_rule(expr, first):
    with pytest.raises(RuleBroken) as info:
        cron.validate(expr)
    assert info.value.rule.startswith(first), info.value.rule
    assert cron.FORMAT_RULE in info.value.rule
