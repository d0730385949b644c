"""What a person reads in a notebook: tables through pandas' Styler, and one verdict banner.

Every table a notebook shows (plans, revisions, jobs, logs, verify checks, doctor findings,
the fleet status) goes through `table()`: in JupyterLab it renders as HTML from pandas' Styler
(text left-aligned, whole messages wrapped with long JSON in a tooltip, one marker for missing
values, timestamps in the job's time zone in one compact format, no row numbers, ok/failed and
severity cells coloured); as text (papermill's text/plain, the CLI) it is the DataFrame's own
text, so nothing a script or a test reads changes. `banner()` is the one-line result a step
ends with: a coloured box in JupyterLab, a plain line elsewhere.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

NA = "—"  # the one marker for a missing value
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
LONG = 2000  # below this a message is shown whole; above it, cut with the rest in a tooltip
GOOD = "background-color: #e6f4ea; color: #137333"
BAD = "background-color: #fce8e6; color: #a50e0e"
WARN = "background-color: #fef7e0; color: #8a5300"
_WORDS = {
    "ok": GOOD, "true": GOOD, "passed": GOOD, "success": GOOD, "succeeded": GOOD,
    "healthy": GOOD, "no change": "", "enabled": GOOD,
    "failed": BAD, "false": BAD, "error": BAD, "critical": BAD, "missing": BAD,
    "warning": WARN, "drifted": WARN, "paused": WARN, "skipped": WARN, "update": WARN,
    "create": GOOD, "delete": BAD,
}  # fmt: skip
_STATUS_COLUMNS = ("ok", "status", "verify", "severity", "health", "action", "result", "state")


@dataclass
class Table:
    """A DataFrame shown as a styled table in JupyterLab and as plain text anywhere else."""

    frame: pd.DataFrame
    time_zone: str | None = None

    def __repr__(self) -> str:
        return repr(self.frame)

    def _repr_html_(self) -> str:
        return styled(self.frame, self.time_zone).to_html()


def table(frame: pd.DataFrame, time_zone: str | None = None) -> Table:
    """The one way notebooks show a table (see the module docstring)."""
    return Table(frame, time_zone)


def styled(frame: pd.DataFrame, time_zone: str | None = None) -> Any:
    """The Styler behind `table()`: its HTML is what JupyterLab shows."""
    shown = _shown(frame, time_zone)
    styler = shown.style.hide(axis="index")
    styler = styler.set_table_styles(
        [
            {"selector": "th", "props": "text-align: left; white-space: nowrap"},
            {"selector": "td", "props": "text-align: left; vertical-align: top"},
            {"selector": "td", "props": "white-space: pre-wrap; max-width: 60em"},
        ]
    )
    times = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if times:  # a timestamp on one line
        styler = styler.set_properties(subset=times, **{"white-space": "nowrap"})
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
        if pd.api.types.is_datetime64_any_dtype(values):
            out[column] = [_when(v, time_zone) for v in values]
        else:
            out[column] = [_text(v, time_zone) for v in values]
    return out


def _when(value: Any, time_zone: str | None) -> str:
    if value is None or pd.isna(value):
        return NA
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None and time_zone:
        stamp = stamp.tz_convert(time_zone)
    return stamp.strftime(TIME_FORMAT).strip()


def _text(value: Any, time_zone: str | None) -> str:
    if isinstance(value, datetime):
        return _when(value, time_zone)
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=str)
    try:
        if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
            return NA
    except (TypeError, ValueError):  # arrays and the like: shown as they are
        pass
    text = str(value)
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
            f"<div class='opslib-verdict opslib-{self.status}' style='{colour}; padding: 8px "
            f"12px; border-radius: 4px; font-weight: bold; font-size: 1.1em'>"
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
    """`PASSED  verify fx-rates  run 1a2b  2026-12-04 09:00:01 KST`: the time on the job's
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
