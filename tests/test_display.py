"""The one table helper notebooks use, and the verdict banner: what a person reads."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from opslib.core.display import NA, banner, table


def frame() -> pd.DataFrame:
    long_message = "x" * 1999
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2026-12-04T00:30:00Z", None], utc=True),
            "message": [long_message, {"processed": 3, "errors": 0, "note": "n" * 100}],
            "ok": [True, False],
            "processed": pd.Series([3, None], dtype="Int64"),
            "latency": [np.nan, 0.5],
            "job": ["fx-rates", None],
        }
    )


def test_html_is_left_aligned_whole_with_one_missing_marker_and_local_time():
    html = table(frame(), "Asia/Seoul")._repr_html_()
    assert "text-align: left" in html and "white-space: pre-wrap" in html
    assert "x" * 1999 in html, "a message under 2,000 characters is shown whole"
    assert "2026-12-04 09:30 KST" in html, "timestamps on the job's clock, one format"
    assert "white-space: nowrap" in html, "a timestamp stays on one line"
    cells = [
        re.sub(r"<span class=\"pd-t\">.*?</span>", "", cell, flags=re.S)
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)
    ]
    assert cells.count(NA) == 4, "NaT, <NA>, NaN and None all show as one marker"
    assert "nan" not in cells and "<NA>" not in html and "None" not in cells
    assert "row_heading" not in html and "level0_row0" not in html.split("<tbody>")[0], "no index"
    assert "#e6f4ea" in html and "#fce8e6" in html, "ok and failed cells coloured"
    assert '"note": "' in html, "a JSON value is written as JSON, with a tooltip"
    assert "pd-t" in html or "tooltip" in html.lower()


def test_a_value_of_2000_characters_or_more_is_cut_with_the_whole_in_a_tooltip():
    html = table(pd.DataFrame({"message": ["y" * 2500]}))._repr_html_()
    assert "y" * 1999 + "…" in html and "y" * 2500 in html  # cell cut, tooltip whole


def test_text_output_is_the_dataframe_itself():
    data = frame()
    assert repr(table(data)) == repr(data), "papermill's text/plain and the CLI keep their text"


def test_banner_is_a_plain_line_and_a_coloured_box():
    passed = banner("passed", "verify fx-rates", "1a2b")
    assert re.fullmatch(
        r"PASSED  verify fx-rates  run 1a2b  \d{4}-\d\d-\d\d \d\d:\d\d UTC", repr(passed)
    )
    assert "opslib-passed" in passed._repr_html_() and "#e6f4ea" in passed._repr_html_()
    failed = banner("failed", "verify kr-prices", detail="attempt NOT_FOUND")
    assert repr(failed).startswith("FAILED  verify kr-prices") and "NOT_FOUND" in repr(failed)
    assert "#fce8e6" in failed._repr_html_()


def test_a_step_ends_with_what_changed_and_the_next_step_on_the_jobs_clock():
    from datetime import UTC, datetime

    from opslib.core.plan import Change, Plan
    from opslib.notebook.verdict import step_done, then

    plan = Plan([Change("deploy", "service s", "create"), Change("deploy", "route /", "create")])
    plan.add(Change("deploy", "invoker", "no change"))
    when = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    done = step_done("03", [plan.to_frame()], "Asia/Seoul")
    assert repr(done).startswith("CHANGED  step 3 deploy: 2 created, 1 no change  ")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d KST\nnext: step 4, 04_schedule", repr(done))
    same = step_done("04", [Plan([Change("schedule", "job", "no change")]).to_frame()], "UTC")
    assert repr(same).startswith("NO CHANGE  step 4 schedule: 1 no change")
    doctor = then(banner("passed", "doctor j: nothing is wrong", when=when, word="OK"), "07")
    assert repr(doctor) == "OK  doctor j: nothing is wrong  2026-12-08 00:00 UTC\nnext: " + (
        "apply each fix with the command it names, then 05_verify"
    )
    assert "mathjax_ignore" in done._repr_html_()


def test_a_gcloud_command_is_folded_whole_behind_its_first_words():
    command = "gcloud run deploy batch-service --image=x --region=asia-northeast3 --memory=2Gi"
    html = table(pd.DataFrame({"resource": ["service"], "gcloud": [command]}))._repr_html_()
    assert "<summary>gcloud run deploy …</summary>" in html
    assert f"user-select: all; white-space: pre-wrap'>{command}</code>" in html
    assert "overflow-x: auto" in html and "mathjax_ignore" in html


def test_values_read_as_people_say_them():
    from opslib.core.humane import duration, plain

    assert [duration(s) for s in (0.246652577, 4.23, 38, 65, 7380)] == [
        "247 ms",
        "4.2 s",
        "38 s",
        "1 m 05 s",
        "2 h 03 m",
    ]
    assert plain("\x1b[32m\x1b[1m1 passed\x1b[0m") == "1 passed"
    shown = table(pd.DataFrame({"ready": [True, False], "duration_s": [65.0, None]}))
    html = shown._repr_html_()
    assert ">yes<" in html and ">no<" in html and "1 m 05 s" in html and "duration_s" not in html
    empty = table(pd.DataFrame(columns=["job"]), none="no error lines")
    assert repr(empty) == "none: no error lines" and "opslib-none" in empty._repr_html_()
