"""What the cron picker shows: sentences, next runs, DST and OR-rule warnings, the change.

Expected values are worked out by hand: calendars (2027-03-14 is the second Sunday of March,
when New York skips 02:00-03:00), Korean weekday names, and Scheduler's wall-clock rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from opslib.spec import cron
from opslib.spec import cron_report as cron_view
from opslib.spec.cron_report import PRESETS
from opslib.spec.rules import RuleBroken

SUNDAY = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)  # 09:00 KST that Sunday
NEW_YEAR_2027 = datetime(2027, 1, 1, tzinfo=UTC)
ENGLISH_NAMES = re.compile(
    r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|March|April|"
    r"May|June|July|August|September|October|November|December"
)
KOREAN_DAY = {0: "일요일", 1: "월요일", 2: "화요일", 3: "수요일", 4: "목요일", 5: "금요일"}
KOREAN_DAY |= {6: "토요일", 7: "일요일"}


def kinds(expr: str, zone: str, start: datetime = NEW_YEAR_2027) -> list[str]:
    return [w.kind for w in cron_view.report(expr, zone, start=start).warnings]


# --- descriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dow", "name"), sorted(KOREAN_DAY.items()))
def test_every_weekday_is_named_in_korean(dow, name):
    text = cron_view.describe_ko(f"0 9 * * {dow}")
    assert name in text
    assert not ENGLISH_NAMES.search(text), text


def test_korean_ranges_names_and_months():
    assert "월요일~금요일" in cron_view.describe_ko("0 9 * * 1-5")
    assert "화요일~토요일" in cron_view.describe_ko("0 8 * * 2-6")
    assert "월요일~금요일" in cron_view.describe_ko("0 9 * * MON-FRI")
    months = cron_view.describe_ko("0 9 * JAN-MAR 1")
    assert "1월~3월" in months and "월요일" in months
    assert not ENGLISH_NAMES.search(months), months


def test_english_sentence_uses_the_24_hour_clock():
    assert cron_view.describe_en("30 21 * * *") == "At 21:30, every day"
    assert "Monday through Friday" in cron_view.describe_en("0 9 * * 1-5")
    assert "21:30" in cron_view.describe_ko("30 21 * * *")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.cron)
def test_the_seeds_presets_are_valid_and_quiet_in_seoul(preset):
    rep = cron_view.report(preset.cron, "Asia/Seoul", start=SUNDAY)
    assert rep.valid and len(rep.next_runs) == 5
    assert rep.warnings == ()  # Seoul has no DST; no preset restricts both day fields
    assert rep.description_en and not ENGLISH_NAMES.search(rep.description_ko)


def test_the_seeds_presets_in_order():
    crons = [p.cron for p in PRESETS]
    assert crons == ["*/30 * * * *", "0 */4 * * *", "0 9 * * 1-5", "0 8 * * 2-6", "0 0 1,15 * *"]


# --- next runs ------------------------------------------------------------------------------


def test_next_runs_are_on_the_jobs_wall_clock():
    rep = cron_view.report("0 9 * * 1-5", "Asia/Seoul", start=SUNDAY)
    shown = [cron_view.format_run(t) for t in rep.next_runs]
    assert shown == [
        "2026-11-30 (월 Mon) 09:00 KST +09:00",
        "2026-12-01 (화 Tue) 09:00 KST +09:00",
        "2026-12-02 (수 Wed) 09:00 KST +09:00",
        "2026-12-03 (목 Thu) 09:00 KST +09:00",
        "2026-12-04 (금 Fri) 09:00 KST +09:00",
    ]


def test_the_same_expression_in_two_zones_runs_at_different_instants():
    saturday_noon = datetime(2026, 11, 28, 12, tzinfo=UTC)  # 21:00 in Seoul
    seoul = cron_view.report("0 9 * * *", "Asia/Seoul", start=saturday_noon).next_runs[0]
    utc = cron_view.report("0 9 * * *", "Etc/UTC", start=saturday_noon).next_runs[0]
    assert seoul == datetime(2026, 11, 29, 0, tzinfo=UTC)  # Sunday 09:00 KST
    assert (utc - seoul).total_seconds() == 9 * 3600


# --- DST ------------------------------------------------------------------------------------


def test_new_york_changes_offset_twice_in_2027_at_two_local_time():
    zone = cron.zone_info("America/New_York")
    changes = cron_view.offset_changes(zone, NEW_YEAR_2027, datetime(2028, 1, 1, tzinfo=UTC))
    # 02:00 EST = 07:00 UTC on the second Sunday of March; 02:00 EDT = 06:00 UTC on the first
    # Sunday of November.
    assert [(c[0], c[1].total_seconds() / 3600, c[2].total_seconds() / 3600) for c in changes] == [
        (datetime(2027, 3, 14, 7, tzinfo=UTC), -5, -4),
        (datetime(2027, 11, 7, 6, tzinfo=UTC), -4, -5),
    ]


def test_a_run_in_the_spring_gap_is_warned_with_what_scheduler_does():
    rep = cron_view.report("30 2 * * *", "America/New_York", start=NEW_YEAR_2027)
    assert [w.kind for w in rep.warnings] == ["dst-gap"]
    gap = rep.warnings[0]
    assert "2027-03-14" in gap.message and "02:00-03:00" in gap.message
    assert "02:30" in gap.message and "wall-clock" in gap.message
    assert "Etc/UTC" in gap.fix


def test_a_run_in_the_autumn_overlap_is_warned():
    rep = cron_view.report("30 1 * * *", "America/New_York", start=NEW_YEAR_2027)
    assert [w.kind for w in rep.warnings] == ["dst-overlap"]
    assert "2027-11-07" in rep.warnings[0].message
    assert "01:00-02:00" in rep.warnings[0].message and "01:30" in rep.warnings[0].message


def test_every_half_hour_hits_both_and_names_the_runs():
    rep = cron_view.report("*/30 * * * *", "America/New_York", start=NEW_YEAR_2027)
    gap, overlap = rep.warnings
    assert (gap.kind, overlap.kind) == ("dst-gap", "dst-overlap")
    assert "02:00, 02:30" in gap.message
    assert "01:00, 01:30" in overlap.message


def test_every_minute_lists_a_few_runs_and_the_count():
    gap = cron_view.report("* * * * *", "America/New_York", start=NEW_YEAR_2027).warnings[0]
    assert "02:00, 02:01, 02:02, 02:03, … (60 runs)" in gap.message


def test_only_runs_that_fall_in_a_shift_are_warned():
    assert kinds("0 9 * * *", "America/New_York") == []  # DST zone, but 09:00 always exists
    assert kinds("30 2 * * 1", "America/New_York") == []  # Mondays; the shifts are on Sundays
    assert kinds("30 2 * 4-10 *", "America/New_York") == []  # not in March or November


@pytest.mark.parametrize("zone", ["Asia/Seoul", "Etc/UTC", "utc", "Asia/Tokyo"])
def test_zones_without_dst_never_warn(zone):
    assert kinds("* * * * *", zone) == []


def test_southern_hemisphere_shifts_the_other_way_round():
    # Sydney: back from 03:00 to 02:00 on 2027-04-04, forward from 02:00 to 03:00 on 2027-10-03.
    rep = cron_view.report("30 2 * * *", "Australia/Sydney", start=NEW_YEAR_2027)
    overlap, gap = rep.warnings
    assert overlap.kind == "dst-overlap" and "2027-04-04" in overlap.message
    assert gap.kind == "dst-gap" and "2027-10-03" in gap.message


def test_a_half_hour_shift_is_a_half_hour_gap():
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 2027-10-03.
    rep = cron_view.report("15 2 * * *", "Australia/Lord_Howe", start=NEW_YEAR_2027)
    gap = next(w for w in rep.warnings if w.kind == "dst-gap")
    assert "02:00-02:30" in gap.message and "02:15" in gap.message


def test_warnings_look_a_year_ahead():
    # After the 2027 gap, the next one is on 2028-03-12, still within a year (02:30 is not in
    # the repeated 01:00-02:00 of November).
    rep = cron_view.report(
        "30 2 * * *", "America/New_York", start=datetime(2027, 3, 15, tzinfo=UTC)
    )
    assert [w.kind for w in rep.warnings] == ["dst-gap"]
    assert "2028-03-12" in rep.warnings[0].message


# --- the OR rule ----------------------------------------------------------------------------


def test_both_day_fields_restricted_warns_of_the_or_rule():
    rep = cron_view.report("0 0 1,15 * 1", "Etc/UTC", start=SUNDAY)
    (warning,) = rep.warnings
    assert warning.kind == "or-rule"
    assert "EITHER" in warning.message and "1,15" in warning.message
    # What the warning describes is what happens: Monday 2026-11-30 runs, though not the 1st.
    assert cron_view.format_run(rep.next_runs[0]).startswith("2026-11-30 (월 Mon) 00:00")


@pytest.mark.parametrize("expr", ["0 0 1,15 * *", "0 9 * * 1-5", "0 0 */2 * 1", "0 0 1 * */2"])
def test_no_or_rule_when_a_day_field_starts_with_a_star(expr):
    assert "or-rule" not in kinds(expr, "Etc/UTC")


# --- errors ---------------------------------------------------------------------------------


def test_a_bad_expression_carries_opslib_crons_own_rule_and_fix():
    rep = cron_view.report("0 9 * * 1#2", "Asia/Seoul", start=SUNDAY)
    with pytest.raises(RuleBroken) as expected:
        cron.validate("0 9 * * 1#2")
    assert not rep.valid
    (issue,) = rep.errors
    assert (issue.key, issue.rule, issue.fix) == (
        "schedule.cron",
        expected.value.rule,
        expected.value.fix,
    )
    assert rep.next_runs == () and rep.description_en == ""


def test_a_zone_scheduler_rejects_is_an_error_with_the_name_to_use():
    rep = cron_view.report("0 9 * * 1-5", "KST", start=SUNDAY)
    (issue,) = rep.errors
    assert issue.key == "schedule.time_zone" and "Asia/Seoul" in issue.fix
    assert rep.description_en  # the expression itself is fine
    assert rep.next_runs == ()


def test_both_broken_lists_both():
    rep = cron_view.report("0 9 * *", "Seoul/Korea", start=SUNDAY)
    assert [i.key for i in rep.errors] == ["schedule.cron", "schedule.time_zone"]
    text = cron_view.to_text(rep)
    assert "got 4 field(s)" in text and "fix:" in text


# --- the change -----------------------------------------------------------------------------


def test_the_change_against_the_current_schedule():
    rep = cron_view.report("0 8 * * 2-6", "Asia/Seoul", ("0 9 * * 1-5", "Asia/Seoul"), start=SUNDAY)
    assert rep.changed and rep.before is not None
    assert cron_view.format_run(rep.before.next_runs[0]) == "2026-11-30 (월 Mon) 09:00 KST +09:00"
    assert cron_view.format_run(rep.next_runs[0]) == "2026-12-01 (화 Tue) 08:00 KST +09:00"
    lines = cron_view.change_lines(rep)
    assert lines[0] == "change: 0 9 * * 1-5 (Asia/Seoul) -> 0 8 * * 2-6 (Asia/Seoul)"
    assert "월요일~금요일" in lines[1] and "화요일~토요일" in lines[2]


def test_the_same_schedule_with_other_spacing_is_no_change():
    rep = cron_view.report(" 0  9 * * 1-5 ", "Asia/Seoul", ("0 9 * * 1-5", "Asia/Seoul"))
    assert rep.cron == "0 9 * * 1-5" and not rep.changed
    assert cron_view.change_lines(rep) == [
        "change: none (the parameters file has 0 9 * * 1-5 in Asia/Seoul)"
    ]


def test_a_zone_change_alone_is_a_change():
    rep = cron_view.report("0 9 * * 1-5", "Asia/Tokyo", ("0 9 * * 1-5", "Asia/Seoul"), start=SUNDAY)
    assert rep.changed
    assert rep.next_runs[0] == rep.before.next_runs[0]  # one instant: both are UTC+9
    assert rep.next_runs[0].tzname() == "JST" and rep.before.next_runs[0].tzname() == "KST"


def test_text_rendering_has_every_part():
    text = cron_view.to_text(
        cron_view.report("*/30 * * * *", "America/New_York", ("0 9 * * 1-5", "Asia/Seoul"))
    )
    for part in ("ko: ", "en: Every 30 minutes", "next runs (America/New_York):", "DST gap"):
        assert part in text
    assert "change: 0 9 * * 1-5 (Asia/Seoul) -> */30 * * * * (America/New_York)" in text
