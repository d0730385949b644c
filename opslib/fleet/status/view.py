"""Showing a status table: the verdict a morning cron exits on, colours for JupyterLab, text.

`healthy` holds when every row is ok or paused; `summary` and `verdict` say it in one line;
`styled` colours failed and missing rows red, drifted amber, paused grey; `to_text` is the
terminal's table with each drift in full below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

HEALTHY = ("ok", "paused")
COLOURS = {"failed": "#f8d7da", "missing": "#f8d7da", "drifted": "#ffe8a1", "paused": "#e9ecef"}


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


def styled(frame: pd.DataFrame) -> Styler:
    """The table for JupyterLab: failed and missing rows red, drifted amber, paused grey."""
    shown = frame.style.apply(_row_colour, axis=1).hide(axis="index")
    return shown.format(precision=3, na_rep="")


def _row_colour(row: pd.Series) -> list[str]:
    colour = COLOURS.get(row["health"])
    return [f"background-color: {colour}" if colour else ""] * len(row)


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
