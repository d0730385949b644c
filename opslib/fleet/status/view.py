"""Showing a status table: the verdict a morning cron exits on, colours for JupyterLab, text.

`healthy` holds when every row is ok or paused; `summary` and `verdict` say it in one line;
`styled` colours failed and missing rows red, drifted amber, paused grey; `page` is what
08_status shows: the compact view (job, health, next run, last run, status, drifted fields),
worst rows first, with every column one click away; `to_text` is the terminal's table with
each drift in full below it. Values go through `core.display` like every other table: times
on each job's own clock, durations in human units, Korean kept whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

HEALTHY = ("ok", "paused")
COLOURS = {"failed": "#f8d7da", "missing": "#f8d7da", "drifted": "#ffe8a1", "paused": "#e9ecef"}
WORST_FIRST = {"failed": 0, "missing": 1, "drifted": 2, "paused": 3, "ok": 4}
COMPACT = ("job", "health", "next_run", "last_run", "status", "drift")


def healthy(frame: pd.DataFrame) -> bool:
    """True when every automation is ok or deliberately paused: the exit code of a morning cron."""
    return bool(frame["health"].isin(HEALTHY).all())


def summary(frame: pd.DataFrame) -> str:
    """One line: N automations: X healthy, Y failed, Z drifted (each row counted once)."""
    counts = frame["health"].value_counts()
    n, ok = len(frame), int(frame["health"].isin(HEALTHY).sum())
    paused = f" ({counts.get('paused', 0)} paused)" if counts.get("paused", 0) else ""
    text = (
        f"{n} automation{'s' if n != 1 else ''}: {ok} healthy{paused}, "
        f"{counts.get('failed', 0)} failed, {counts.get('drifted', 0)} drifted"
    )
    return text + (f", {counts['missing']} missing" if counts.get("missing", 0) else "")


def verdict(frame: pd.DataFrame) -> Any:
    """The page's one-line result: HEALTHY or UNHEALTHY, and the counts."""
    from opslib.core.display import banner

    ok = healthy(frame)
    word = "HEALTHY" if ok else "UNHEALTHY"
    zone = frame["time_zone"].iloc[0] if len(frame) else None  # the first job's, as Fleet's
    status = "passed" if ok else "failed"
    return banner(status, f"status: {summary(frame)}", word=word, time_zone=zone)


def worst_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Failed, then missing, drifted, paused and ok rows; the file order within each."""
    return frame.sort_values("health", key=lambda h: h.map(WORST_FIRST), kind="stable")


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """One short row per automation, worst first: what fits the page for ten of them.

    status is the newest run's (from the logs), else Scheduler's last attempt's; drift names
    the fields only (the full `field: live -> file` is in the full table)."""
    rows = worst_first(frame)
    ran = rows["run_status"].where(rows["run_status"].fillna("").astype(str).ne(""))
    out = rows[["job", "health", "next_run", "last_run"]].copy()
    out["status"] = ran.fillna(rows["last_status"])
    out["drift"] = rows["drift"].map(_drift_fields)
    return out.reset_index(drop=True)


def _drift_fields(drift: str) -> str:
    return ", ".join(part.split(":")[0] for part in drift.split("; ")) if drift else "none"


def styled(frame: pd.DataFrame) -> Styler:
    """A status table for JupyterLab, through `core.display`: failed and missing rows red,
    drifted amber, paused grey."""
    from opslib.core.display import styled as table_style

    return table_style(frame).apply(_row_colour, axis=1)


def _row_colour(row: pd.Series) -> list[str]:
    colour = COLOURS.get(row["health"])
    return [f"background-color: {colour}" if colour else ""] * len(row)


@dataclass
class Page:
    """08_status: the compact view, and every column behind one click (a `<details>`)."""

    frame: pd.DataFrame

    def __repr__(self) -> str:
        return to_text(worst_first(self.frame))

    def _repr_html_(self) -> str:
        from opslib.core.display import NO_MATHS, boxed

        if self.frame.empty:
            return f"<div class='opslib-none {NO_MATHS}'>none: no automations found</div>"
        short = boxed(styled(compact(self.frame)).to_html())
        full = boxed(styled(worst_first(self.frame)).to_html())
        summary = f"every column ({len(self.frame.columns)}), drift in full"
        return (
            f"<div class='opslib-status'>{short}<details class='opslib-full'>"
            f"<summary>{summary}</summary>{full}</details></div>"
        )


def page(frame: pd.DataFrame) -> Page:
    """What 08_status shows (see the module docstring)."""
    return Page(frame)


def to_text(frame: pd.DataFrame, width: int = 40) -> str:
    """The table for a terminal: long cells cut to `width`, then each drift in full."""
    if frame.empty:
        return "(no automations)"
    lines = [frame.to_string(index=False, max_colwidth=width)]
    drifted = frame[frame["drift"].ne("")]
    if len(drifted):
        lines.append("\ndrift (live -> file):")
        lines += [f"  {row.job}: {row.drift}" for row in drifted.itertuples()]
    return "\n".join(lines)
