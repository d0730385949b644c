"""What a person reads in a notebook: tables through pandas' Styler, and one verdict banner.

Every table a notebook shows (plans, revisions, jobs, logs, verify checks, doctor findings,
the fleet status) goes through `table()`: in JupyterLab it renders as HTML from pandas' Styler
in a box of its own that scrolls sideways when the table is wider than the page (text
left-aligned; short values such as names, crons and times on one line; long messages wrapped
at word boundaries, Korean never inside a word (`word-break: keep-all`), long JSON in a
tooltip; gcloud commands folded behind a one-click disclosure; one marker for missing values;
the values of `humane`: times on the job's clock, durations in human units, yes/no; no row
numbers; ok/failed and severity cells coloured; never typeset as maths). An empty table is
one line saying what was looked for and that nothing was found. As text (papermill's
text/plain, the CLI) it is the DataFrame's own text, so nothing a script or a test reads
changes. `banner()` is the one-line result a step ends with: a coloured box in JupyterLab, a
plain line elsewhere.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from opslib.core.humane import (
    TIME_FORMAT,
    duration,
    duration_header,
    duration_unit,
    plain,
    when,
    yes_no,
)

__all__ = ["NA", "TIME_FORMAT", "Banner", "Table", "banner", "show", "styled", "table"]

NA = "—"  # the one marker for a missing value
SHORT = 40  # a column whose values are all this short stays on one line (names, crons, times)
NO_MATHS = "tex2jax_ignore mathjax_ignore"  # JupyterLab's MathJax leaves these elements alone
FOLDED = ("gcloud", "command", "query")  # columns of commands: folded, one click to unfold
LONG = 2000  # below this a message is shown whole; above it, cut with the rest in a tooltip
GOOD = "background-color: #e6f4ea; color: #137333"
BAD = "background-color: #fce8e6; color: #a50e0e"
WARN = "background-color: #fef7e0; color: #8a5300"
_WORDS = {
    "ok": GOOD, "true": GOOD, "passed": GOOD, "success": GOOD, "succeeded": GOOD,
    "healthy": GOOD, "no change": "", "enabled": GOOD,
    "failed": BAD, "false": BAD, "error": BAD, "critical": BAD, "missing": BAD,
    "warning": WARN, "drifted": WARN, "paused": WARN, "skipped": WARN, "update": WARN,
    "create": GOOD, "delete": BAD, "yes": GOOD, "no": BAD,
}  # fmt: skip
_STATUS_COLUMNS = ("ok", "status", "verify", "severity", "health", "action", "result", "state")


@dataclass
class Table:
    """A DataFrame shown as a styled table in JupyterLab and as plain text anywhere else."""

    frame: pd.DataFrame
    time_zone: str | None = None
    none: str = ""  # what an empty table says: what was looked for, and that none was found

    def __repr__(self) -> str:
        return self.none_line() if self.frame.empty else repr(self.frame)

    def _repr_html_(self) -> str:
        if self.frame.empty:
            line = html.escape(self.none_line())
            return f"<div class='opslib-none {NO_MATHS}'>{line}</div>"
        return boxed(styled(self.frame, self.time_zone).to_html())

    def none_line(self) -> str:
        if self.none:
            return f"none: {self.none}"
        columns = ", ".join(map(str, self.frame.columns))
        return f"none: nothing found ({columns})" if columns else "none: nothing found"


def table(frame: pd.DataFrame, time_zone: str | None = None, none: str = "") -> Table:
    """The one way notebooks show a table (see the module docstring). `none` says what an
    empty one looked for ("no error lines in the last hour")."""
    return Table(frame, time_zone, none)


def boxed(markup: str) -> str:
    """HTML in a box of its own: it scrolls sideways when wider than the page, no maths."""
    style = "overflow-x: auto; max-width: 100%"
    return f"<div class='opslib-table {NO_MATHS}' style='{style}'>{markup}</div>"


def styled(frame: pd.DataFrame, time_zone: str | None = None) -> Any:
    """The Styler behind `table()`: its HTML is what JupyterLab shows."""
    shown = _shown(frame, time_zone)
    folded = [c for c in shown.columns if str(c).lower() in FOLDED]
    styler = shown.style.hide(axis="index").format(escape="html")
    if folded:
        styler = styler.format(_fold, subset=folded, escape="html")
    styler = styler.set_table_styles(
        [
            {"selector": "", "props": "border-collapse: collapse"},
            {"selector": "th", "props": "text-align: left; white-space: nowrap"},
            {"selector": "td", "props": "text-align: left; vertical-align: top"},
            {"selector": "td", "props": "white-space: pre-wrap; max-width: 60em"},
            {"selector": "td", "props": "word-break: keep-all; overflow-wrap: break-word"},
        ]
    )
    short = [
        c
        for c in shown.columns
        if c not in folded and shown[c].map(lambda v: len(str(v)) <= SHORT).all()
    ]
    if short:  # names, crons, times, counts: on one line, never split at a hyphen
        styler = styler.set_properties(subset=short, **{"white-space": "nowrap !important"})
    status = [c for c in shown.columns if str(c).lower() in _STATUS_COLUMNS]
    if status:
        styler = styler.map(_colour, subset=status)
    tips = _tooltips(frame)
    if tips is not None:
        styler = styler.set_tooltips(tips)
    return styler


def _shown(frame: pd.DataFrame, time_zone: str | None) -> pd.DataFrame:
    """Values as a person reads them: local compact times, whole text, one missing marker."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        unit = duration_unit(column)
        if pd.api.types.is_datetime64_any_dtype(values):
            out[column] = [_when(v, time_zone) for v in values]
        elif unit is not None and pd.api.types.is_numeric_dtype(values):
            out[duration_header(column)] = [_duration(v, unit) for v in values]
        else:
            out[column] = [_text(v, time_zone) for v in values]
    empty = [c for c in out.columns if out[c].eq("").all()]
    return out.drop(columns=empty) if len(empty) < len(out.columns) else out  # nothing to read


def _when(value: Any, time_zone: str | None) -> str:
    if value is None or pd.isna(value):
        return NA
    return when(value, time_zone)


def _duration(value: Any, unit: float) -> str:
    return NA if value is None or pd.isna(value) else duration(float(value) * unit)


def _fold(text: str) -> str:
    """A command folded behind its first words: one click shows it whole, and one click on it
    selects all of it to copy (`user-select: all`)."""
    if text == NA or len(text) <= SHORT:
        return text
    head = " ".join(text.split(" ")[:3])
    code = f"<code style='user-select: all; white-space: pre-wrap'>{text}</code>"
    return f"<details><summary>{head} …</summary>{code}</details>"


def _text(value: Any, time_zone: str | None) -> str:
    if isinstance(value, datetime):
        return _when(value, time_zone)
    if isinstance(value, bool | np.bool_):
        return yes_no(bool(value))
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=str)
    try:
        if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
            return NA
    except (TypeError, ValueError):  # arrays and the like: shown as they are
        pass
    text = plain(str(value))
    return text if len(text) < LONG else text[: LONG - 1] + "…"


def _tooltips(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The whole value of a long or JSON cell, on hover."""
    tips = frame.map(_tip)
    if not tips.map(bool).to_numpy().any():
        return None
    tips.index = frame.index
    return tips


def _tip(value: Any) -> str:
    text = (
        json.dumps(value, ensure_ascii=False, default=str)
        if isinstance(value, dict | list)
        else value
    )
    if not isinstance(text, str):
        return ""
    looks_json = text.startswith(("{", "[")) and len(text) > 80
    return text if looks_json or len(text) >= LONG else ""


def _colour(value: Any) -> str:
    word = str(value).strip().lower()
    return _WORDS.get(word, _WORDS.get(word.split(" ")[0], ""))


@dataclass
class Banner:
    """One result line: PASSED / FAILED / n findings, with what and when."""

    status: str  # "passed", "failed" or "warning"
    text: str
    detail: str = ""

    def __repr__(self) -> str:
        return f"{self.text}" + (f"\n{self.detail}" if self.detail else "")

    def _repr_html_(self) -> str:
        colour = {"passed": GOOD, "failed": BAD}.get(self.status, WARN)
        detail = f"<div style='font-weight: normal'>{html.escape(self.detail)}</div>"
        return (
            f"<div class='opslib-verdict opslib-{self.status} {NO_MATHS}' style='{colour}; "
            f"padding: 8px 12px; border-radius: 4px; font-weight: bold; font-size: 1.1em'>"
            f"{html.escape(self.text)}{detail if self.detail else ''}</div>"
        )


def banner(
    status: str,
    what: str,
    run_id: str = "",
    when: datetime | None = None,
    word: str | None = None,
    detail: str = "",
    time_zone: str | None = None,
) -> Banner:
    """`PASSED  verify fx-rates  run 1a2b  2026-12-04 09:00 KST`: the time on the job's
    clock (`time_zone`, the job's zone; UTC only where there is no job to take it from)."""
    word = word or {"passed": "PASSED", "failed": "FAILED"}.get(status, status.upper())
    zone = ZoneInfo(time_zone or "UTC")
    stamp = (when or datetime.now(UTC)).astimezone(zone).strftime(TIME_FORMAT).strip()
    parts = [word, what] + ([f"run {run_id}"] if run_id else []) + [stamp]
    return Banner(status, "  ".join(parts), detail)


def show(item: object) -> None:
    """Display in a notebook (HTML in JupyterLab, text under papermill); print elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:  # no IPython: a plain Python process
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is not None and get_ipython() is not None:
        from IPython.display import display

        display(item)
    else:
        print(repr(item))
