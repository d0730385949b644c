"""The cron picker driven through its observers, and 00_quickstart run by papermill.

The browser test (test_browser.py) checks what only a frontend shows; here the same logic is
driven by setting widget values, as the frontend does, and the notebook runs headlessly with two
parameter sets (its widget state lands in metadata.widgets).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from conftest import EXAMPLE, ROOT, SHIPPED_PARAMS, as_shipped, indexed, tool
from opslib.notebook import widgets
from opslib.spec.loader import load_spec

NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
SUNDAY = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
SECRET = "s3cr3t-value-never-shown"


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return Path(shutil.copy(EXAMPLE, tmp_path / "example.yaml"))


@pytest.fixture
def picker(params: Path) -> widgets.CronPicker:
    return widgets.cron_picker(params, start=SUNDAY)


def shown(widget) -> str:
    """An HTML widget's text as a reader sees it (tags dropped, entities decoded)."""
    return unescape(re.sub(r"<[^>]+>", " ", widget.value))


# --- the picker, through its observers ------------------------------------------------------


def test_it_opens_on_the_files_schedule_and_writes_nothing(picker, params):
    assert picker.preset.value == "0 9 * * 1-5"  # one of the seed's presets
    assert (picker.custom.value, picker.time_zone.value) == ("0 9 * * 1-5", "Asia/Seoul")
    assert "월요일~금요일" in shown(picker.description)
    assert "Monday through Friday" in shown(picker.description)
    assert "2026-11-30 (월 Mon) 09:00 KST +09:00" in shown(picker.next_runs)
    assert picker.error.value == "" and picker.warnings.value == ""
    assert params.read_bytes() == EXAMPLE.read_bytes()


def test_every_part_has_its_css_class(picker):
    classes = {c for child in picker.children for c in child._dom_classes}
    assert classes == {
        "cron-preset",
        "cron-custom",
        "cron-time-zone",
        "cron-description",
        "cron-next-runs",
        "cron-warnings",
        "cron-error",
        "cron-change",
        "cron-status",
    }


def test_picking_a_preset_fills_the_expression_and_saves_it(picker, params):
    picker.preset.value = "*/30 * * * *"
    assert picker.custom.value == "*/30 * * * *"
    assert "30분마다" in shown(picker.description) and "Every 30 minutes" in shown(
        picker.description
    )
    assert "2026-11-29 (일 Sun) 09:30 KST +09:00" in shown(picker.next_runs)
    assert "0 9 * * 1-5 (Asia/Seoul) -> */30 * * * * (Asia/Seoul)" in shown(picker.change)
    assert load_spec(params).schedule.cron == "*/30 * * * *"
    status = shown(picker.status)
    assert "saved to" in status and ": */30 * * * * in Asia/Seoul" in status
    assert picker.last_write is not None and picker.last_write.fields == ("schedule.cron",)


def test_a_custom_expression_switches_the_preset_to_custom(picker, params):
    picker.custom.value = "15 10 * * 1"
    assert picker.preset.value == widgets.CUSTOM
    assert "월요일" in shown(picker.description) and "10:15" in shown(picker.description)
    assert load_spec(params).schedule.cron == "15 10 * * 1"
    picker.custom.value = "0  8 * * 2-6"  # a preset, typed with extra spaces
    assert picker.preset.value == "0 8 * * 2-6"
    assert load_spec(params).schedule.cron == "0 8 * * 2-6"


def test_an_invalid_expression_writes_nothing_and_shows_the_rule(picker, params):
    picker.preset.value = "0 0 1,15 * *"
    text = params.read_bytes()
    picker.custom.value = "0 9 * * 1#2"
    assert "day-of-week" in shown(picker.error) and "fix:" in shown(picker.error)
    assert picker.next_runs.value == "" and picker.description.value == ""
    assert "nothing written" in shown(picker.status)
    assert params.read_bytes() == text
    picker.custom.value = "0 9 * * 1-5"  # fixing it clears the error
    assert picker.error.value == ""


def test_choosing_the_current_schedule_again_changes_nothing(picker, params):
    picker.preset.value = "0 8 * * 2-6"
    stamp, text = params.stat().st_mtime_ns, params.read_bytes()
    picker.choose("0 8 * * 2-6", "Asia/Seoul")
    assert "no change" in shown(picker.status)
    assert "change: none" in shown(picker.change)
    assert params.stat().st_mtime_ns == stamp and params.read_bytes() == text


def test_the_time_zone_moves_the_runs_and_warns_of_dst(picker, params):
    picker.preset.value = "*/30 * * * *"
    picker.time_zone.value = "America/New_York"
    kinds = [x.kind for x in picker.report.warnings]
    assert kinds == ["dst-gap", "dst-overlap"]
    assert "DST gap" in shown(picker.warnings) and "2027-03-14" in shown(picker.warnings)
    assert "EST -05:00" in shown(picker.next_runs)
    assert load_spec(params).schedule.time_zone == "America/New_York"


def test_a_zone_scheduler_rejects_is_shown_and_not_written(picker, params):
    picker.time_zone.value = "KST"
    assert "abbreviation" in shown(picker.error) and "Asia/Seoul" in shown(picker.error)
    assert params.read_bytes() == EXAMPLE.read_bytes()


def test_the_or_rule_warning(picker):
    picker.custom.value = "0 9 1 * 1"
    assert [x.kind for x in picker.report.warnings] == ["or-rule"]
    assert "EITHER" in shown(picker.warnings)


def test_a_file_broken_meanwhile_is_shown_not_raised(picker, params):
    params.write_text(params.read_text().replace("fx-rates", "FX rates", 1))
    broken = params.read_bytes()
    picker.custom.value = "*/30 * * * *"
    assert "job.name" in shown(picker.error)
    assert "nothing written" in shown(picker.status)
    assert params.read_bytes() == broken


def test_without_a_frontend_it_is_the_whole_report_as_text(picker):
    picker.preset.value = "0 */4 * * *"
    text = picker._repr_mimebundle_()["text/plain"]
    assert text == picker.text()
    assert "schedule: 0 */4 * * * (Asia/Seoul)" in text and "4시간마다" in text
    assert "next runs (Asia/Seoul):" in text and "saved to" in text
    assert len(text) > 110  # not the truncated widget repr


# --- the notebook under papermill -----------------------------------------------------------


def parameters_cell(nb) -> ast.Module:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return ast.parse(cell.source)


def declared(nb) -> dict[str, object]:
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in parameters_cell(nb).body
        if isinstance(node, ast.Assign)
    }


def run(tmp_path: Path, parameters: dict[str, object]):
    """Run the notebook as shipped (its committed defaults, not a user's answers typed into the
    repository's copy) with `tmp_path` as its working directory (and project root)."""
    nb = as_shipped(NOTEBOOK)
    unknown = set(parameters) - set(declared(nb))
    assert not unknown, f"not declared in the parameters cell: {unknown}"
    shipped = tmp_path / ".notebook" / NOTEBOOK.name
    shipped.parent.mkdir()
    nbformat.write(nb, shipped)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(shipped),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    return nbformat.read(out, as_version=4)


def widget_values(nb) -> dict[str, str]:
    """Each picker part's value from the saved widget state, by its CSS class."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    values = {}
    for model in state.values():
        for css in model["state"].get("_dom_classes", []):
            values[css] = model["state"].get("value")
    return values


def picker_text(nb) -> str:
    (cell,) = [c for c in nb.cells if "cron_picker" in c.source]
    (output,) = cell.outputs
    assert "application/vnd.jupyter.widget-view+json" in output.data
    return output.data["text/plain"]


def test_default_run_writes_a_new_file_and_shows_the_picker(tmp_path):
    nb = run(tmp_path, {})
    path = tmp_path / "parameters" / "my-job.yaml"
    spec = load_spec(path)
    assert (spec.job.name, spec.schedule.cron, spec.schedule.time_zone) == (
        "my-job",
        "0 9 * * 1-5",
        "Asia/Seoul",
    )
    assert spec.secrets == {}
    text = picker_text(nb)
    assert "schedule: 0 9 * * 1-5 (Asia/Seoul)" in text and "월요일~금요일" in text
    values = widget_values(nb)
    assert "월요일~금요일" in values["cron-description"]
    assert "Monday through Friday" in values["cron-description"]
    assert values["cron-custom"] == "0 9 * * 1-5" and values["cron-error"] == ""
    assert not nb.metadata["papermill"]["exception"]


def test_another_parameter_set_with_a_dst_zone_and_a_dotenv(tmp_path):
    (tmp_path / ".env").write_text(f"FX_API_KEY={SECRET}\nSLACK_TOKEN={SECRET}x\n")
    nb = run(
        tmp_path,
        {
            "name": "night-sync",
            "description": "야간 동기화",
            "pattern": "class",
            "cron": "*/30 * * * *",
            "time_zone": "America/New_York",
            "env_file": ".env",
            "api_keys": ["EXTRA_KEY"],
            "params": "custom/night.yaml",
            "region": "us-central1",
        },
    )
    path = tmp_path / "custom" / "night.yaml"
    spec = load_spec(path)
    assert (spec.job.pattern, spec.region, spec.schedule.time_zone) == (
        "class",
        "us-central1",
        "America/New_York",
    )
    assert list(spec.secrets) == ["EXTRA_KEY", "FX_API_KEY", "SLACK_TOKEN"]
    assert SECRET not in path.read_text()
    assert SECRET not in (tmp_path / "out.ipynb").read_text()
    values = widget_values(nb)
    assert "DST gap" in values["cron-warnings"] and "DST overlap" in values["cron-warnings"]
    assert "30분마다" in values["cron-description"]
    assert "DST gap" in picker_text(nb)


def test_a_bad_answer_fails_the_notebook_loudly_and_writes_nothing(tmp_path):
    with pytest.raises(PapermillExecutionError) as caught:
        run(tmp_path, {"time_zone": "KST"})
    assert "schedule.time_zone" in str(caught.value)
    assert not (tmp_path / "parameters").exists()
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.metadata["papermill"]["exception"]


def test_the_notebook_is_thin_committed_without_outputs_and_safe_by_default():
    committed = indexed(NOTEBOOK) or NOTEBOOK.read_bytes()  # git's, not a user's saved runs
    subprocess.run([tool("nbstripout"), "--verify"], input=committed, check=True)
    nb = as_shipped(NOTEBOOK)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            assert not any(isinstance(n, ast.Try) for n in ast.walk(tree)), cell.source
    defaults = declared(nb)
    assert {"name", "cron", "time_zone", "api_keys", "env_file", "params", "target"} <= set(
        defaults
    )
    shipped = {p.name for p in SHIPPED_PARAMS}
    assert f"{defaults['name']}.yaml" not in shipped and not defaults["params"]
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for seed in ("무슨 작업?", "얼마나 자주?", "특별한 API 키?", "`*/30 * * * *` | 30분마다"):
        assert seed in markdown
