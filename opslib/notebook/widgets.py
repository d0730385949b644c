"""The cron picker: the seed's frequent schedules or your own, explained before it is saved.

A preset (자주 쓰는 cron) or a custom expression, and the job's time zone, show at once what the
schedule means (Korean and English), its next runs on the job's wall clock, warnings (DST gaps
and overlaps, the day-of-month / day-of-week OR rule) and the change against the parameters
file. A valid choice is written back into the file (`opslib.spec.params_file`: comments kept, whole
spec checked, atomic, nothing written when unchanged); an invalid one writes nothing and shows
the rule and its fix.

Without a frontend (papermill, nbconvert) the picker shows as text: its `text/plain` is the
whole report, and the HTML widgets' values are saved in the notebook's widget state. Every part
carries a stable CSS class (cron-preset, cron-custom, ...) for tests and styling.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as w

from opslib.core.errors import OpslibError
from opslib.core.plan import Change
from opslib.spec import cron, params_file
from opslib.spec import cron_report as cron_view
from opslib.spec.cron_report import CronReport

CUSTOM = ""  # the preset Dropdown's value when the expression is not one of the seed's
CUSTOM_LABEL = "직접 입력 · custom"
_WIDE = {"description_width": "initial"}


def cron_picker(
    params_path: str | Path, *, count: int = cron.NEXT_RUNS, start: datetime | None = None
) -> CronPicker:
    """The picker for the schedule in `params_path` (`start` fixes "now", for tests)."""
    return CronPicker(Path(params_path), count=count, start=start)


class CronPicker(w.VBox):
    """Preset, custom expression and time zone in; description, runs, warnings, change out."""

    def __init__(
        self, path: Path, *, count: int = cron.NEXT_RUNS, start: datetime | None = None
    ) -> None:
        self.path, self.count, self.start = path, count, start
        expr, zone = params_file.current_schedule(path)
        options = [(CUSTOM_LABEL, CUSTOM), *((p.label, p.cron) for p in cron_view.PRESETS)]
        self.preset = w.Dropdown(
            options=options,
            value=_preset_of(expr),
            description="자주 쓰는 cron",
            style=_WIDE,
            layout=w.Layout(width="max-content"),  # every label whole, Korean and English
        )
        self.custom = w.Text(
            value=expr,
            continuous_update=False,
            description="cron",
            placeholder="0 9 * * 1-5",
            style=_WIDE,
        )
        self.time_zone = w.Text(
            value=zone, continuous_update=False, description="time zone", style=_WIDE
        )
        self.description, self.next_runs, self.warnings = w.HTML(), w.HTML(), w.HTML()
        self.error, self.change, self.status = w.HTML(), w.HTML(), w.HTML()
        parts = {
            "cron-preset": self.preset,
            "cron-custom": self.custom,
            "cron-time-zone": self.time_zone,
            "cron-description": self.description,
            "cron-next-runs": self.next_runs,
            "cron-warnings": self.warnings,
            "cron-error": self.error,
            "cron-change": self.change,
            "cron-status": self.status,
        }
        for css, widget in parts.items():
            widget.add_class(css)
        super().__init__(children=list(parts.values()))
        self.add_class("cron-picker")
        self.report: CronReport = cron_view.report(expr, zone, (expr, zone), **self._when())
        self.last_write: Change | None = None
        self.saved: list[Callable[[], None]] = []  # called after each write (the summary)
        self._status_text = ""
        self._syncing = False
        self._show(self.report)
        self._set_status(f"the schedule in {path}; a valid choice is saved there")
        self.preset.observe(self._on_preset, "value")
        self.custom.observe(self._on_custom, "value")
        self.time_zone.observe(self._on_zone, "value")

    def _when(self) -> dict[str, Any]:
        return {"count": self.count, "start": self.start}

    # --- observers --------------------------------------------------------------------------

    def _on_preset(self, change: dict[str, Any]) -> None:
        if change["new"] != CUSTOM and not self._syncing:
            self.custom.value = change["new"]  # the custom field's observer takes it from here

    def _on_custom(self, change: dict[str, Any]) -> None:
        self._syncing = True
        try:
            self.preset.value = _preset_of(change["new"])
        finally:
            self._syncing = False
        self.choose(change["new"], self.time_zone.value)

    def _on_zone(self, change: dict[str, Any]) -> None:
        self.choose(self.custom.value, change["new"])

    # --- the choice -------------------------------------------------------------------------

    def choose(self, expr: str, time_zone: str) -> CronReport:
        """Explain the choice and, when it is valid, write it into the parameters file."""
        try:
            current = params_file.current_schedule(self.path)
        except OpslibError as exc:  # the file was broken meanwhile: show why, write nothing
            return self._refuse(self.report, exc.render())
        self.report = cron_view.report(expr, time_zone, current, **self._when())
        self._show(self.report)
        if not self.report.valid:
            return self._refuse(self.report)
        try:
            self.last_write = params_file.set_schedule(
                self.path, self.report.cron, self.report.time_zone
            )
        except OpslibError as exc:  # another key of the spec breaks a rule with this schedule
            return self._refuse(self.report, exc.render())
        chosen = f"{self.report.cron} in {self.report.time_zone}"
        for callback in self.saved:
            callback()
        if self.last_write.action == "no change":
            self._set_status(f"no change: {self.path} already has {chosen}")
        else:
            self._set_status(f"saved to {self.path}: {chosen}")
        return self.report

    def _refuse(self, rep: CronReport, message: str = "") -> CronReport:
        if message:
            self.error.value = f'<pre style="color:#b00020">{escape(message)}</pre>'
        self._set_status(f"nothing written to {self.path}: fix the error above")
        return rep

    def _set_status(self, text: str) -> None:
        self._status_text = text
        self.status.value = f"<i>{escape(text)}</i>"

    # --- rendering --------------------------------------------------------------------------

    def _show(self, rep: CronReport) -> None:
        self.description.value = _description_html(rep)
        self.next_runs.value = _runs_html(rep)
        self.warnings.value = _warnings_html(rep)
        self.error.value = _errors_html(rep)
        self.change.value = _change_html(rep)

    def text(self) -> str:
        """The picker as plain text: the report and what happened to the file."""
        return f"{cron_view.to_text(self.report)}\n{self._status_text}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.text()  # the whole report, not a 110-character repr
        return bundle


def live_summary(params_path: str | Path, picker: CronPicker | None = None) -> SummaryView:
    """What the parameters file says, redrawn each time the picker saves a schedule."""
    return SummaryView(Path(params_path), picker)


class SummaryView(w.HTML):
    """The file read back through the loader, as a styled table that stays true."""

    def __init__(self, path: Path, picker: CronPicker | None = None) -> None:
        super().__init__()
        self.path = path
        self.add_class("quickstart-summary")
        self.refresh()
        if picker is not None:
            picker.saved.append(self.refresh)

    def refresh(self) -> None:
        from opslib.core.display import boxed, styled
        from opslib.spec.loader import load_spec
        from opslib.spec.summary import summarize

        self.frame = summarize(load_spec(self.path))
        self.value = boxed(styled(self.frame).to_html())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.frame.to_string(index=False)
        return bundle


def _preset_of(expr: str) -> str:
    normal = " ".join(str(expr).split())
    return normal if any(p.cron == normal for p in cron_view.PRESETS) else CUSTOM


def _description_html(rep: CronReport) -> str:
    if not rep.description_en:
        return ""
    return (
        f'<div>한국어: <span class="cron-ko">{escape(rep.description_ko)}</span></div>'
        f'<div>English: <span class="cron-en">{escape(rep.description_en)}</span></div>'
    )


def _runs_html(rep: CronReport) -> str:
    if not rep.next_runs:
        return ""
    items = "".join(  # a run on one line: "+09:00" stays beside its time
        f'<li style="white-space: nowrap">{escape(cron_view.format_run(t))}</li>'
        for t in rep.next_runs
    )
    return f"<div>next runs ({escape(rep.time_zone)}):</div><ol>{items}</ol>"


def _warnings_html(rep: CronReport) -> str:
    items = "".join(
        f'<li data-kind="{escape(x.kind)}">{escape(x.message)}<br><i>fix: {escape(x.fix)}</i></li>'
        for x in rep.warnings
    )
    return f'<ul style="color:#8a5300">{items}</ul>' if items else ""


def _errors_html(rep: CronReport) -> str:
    return "".join(
        f'<div style="color:#b00020"><b>{escape(i.key)}</b>: {escape(i.rule)}<br>'
        f"fix: {escape(i.fix)}</div>"
        for i in rep.errors
    )


def _change_html(rep: CronReport) -> str:
    lines = cron_view.change_lines(rep)
    text = escape(chr(10).join(lines))  # long lines scroll: a time and "+09:00" stay whole
    style = "white-space: pre; overflow-x: auto"
    return f'<pre style="{style}">{text}</pre>' if lines else ""
