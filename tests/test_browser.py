"""00_quickstart in a real JupyterLab and Debian's Chromium, driven by Playwright.

What only a browser catches: the widget frontend extension, JS errors, `continuous_update=False`
syncing on Enter, and what the page really shows. The notebook is a temporary copy served from
a temporary directory (autosave would otherwise write outputs into the repo), with fresh Jupyter
config, runtime, settings and IPython directories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import lc
import nbformat
import pytest

from conftest import EXAMPLE, ROOT, as_shipped, copy_service
from opslib.notebook.widgets import CUSTOM_LABEL
from opslib.spec.cron_report import PRESETS
from opslib.spec.loader import load_spec

NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
CHROMIUM = shutil.which("chromium")
WAIT_MS = 60_000
KERNEL_IDLE = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = widget && widget.sessionContext && widget.sessionContext.session;
  return !!(session && session.kernel && session.kernel.status === "idle");
}"""


def _require_chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium is not installed: .ci/run installs it (apt-get)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urlopen(f"{url}api/status", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer at {url}:\n{log.read_text()}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab serving a temporary copy of the notebooks; yields (url, their folder)."""
    work = tmp_path / "work" / "notebooks"
    work.mkdir(parents=True)
    for notebook in NOTEBOOK.parent.glob("*.ipynb"):  # not a user's outputs and answers
        nbformat.write(as_shipped(notebook), work / notebook.name)
    dirs = {
        name: tmp_path / name for name in ("config", "runtime", "ipython", "settings", "spaces")
    }
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["spaces"]),
        "OPSLIB_LOCALCLOUD_URL": lc.server().url,  # the kernels deploy to the test localcloud
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        f"--ServerApp.root_dir={work.parent}",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_server(url, process, log)
        yield url, work
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the kernel it started
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Draws three Hangul syllables in the element's own font: with no font that has Hangul each is
# the same .notdef box, so the three images are identical; with one they all differ.
_GLYPHS = """(selector) => {
  const family = getComputedStyle(document.querySelector(selector)).fontFamily;
  const draw = (ch) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 64;
    const context = canvas.getContext('2d');
    context.font = `48px ${family}`;
    context.fillText(ch, 4, 52);
    return Array.from(context.getImageData(0, 0, 64, 64).data).join(',');
  };
  return ['월', '화', '수'].map(draw);
}"""


def _hangul_has_glyphs(page, selector: str) -> bool:
    """True when the page's font draws Hangul (three distinct syllables, three images)."""
    images = page.evaluate(_GLYPHS, selector)
    blank = ",".join(["0"] * (64 * 64 * 4))
    return len(set(images)) == 3 and blank not in images


SHOTS = ROOT / "runs" / "screenshots"  # CI artifacts (runs/ is not committed)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# What issue 19 asks of every page, read from the DOM of the notebook on screen.
READS_WELL = """(panel) => {
  const root = document.querySelector(panel);
  const problems = [];
  const outputs = root.querySelectorAll('.jp-OutputArea-output');
  for (const table of root.querySelectorAll('.jp-OutputArea-output table')) {
    const area = table.closest('.jp-OutputArea-output');
    const box = table.closest('.opslib-table') || table.parentElement;
    const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
    const name = (table.querySelector('th') || {}).textContent || '?';
    if (table.scrollWidth > box.clientWidth + 1 && !scrolls)
      problems.push(`table "${name}" is clipped: ${table.scrollWidth} px in ${box.clientWidth}`);
    if (box.getBoundingClientRect().right > area.getBoundingClientRect().right + 1)
      problems.push(`table "${name}": its box runs past the output area`);
    if (table.querySelectorAll('tbody tr').length === 0)
      problems.push(`table "${name}" is empty without a "none" line`);
    for (const td of table.querySelectorAll('td')) {
      if (getComputedStyle(td).textAlign !== 'left') {
        problems.push(`table "${name}": a cell is not left-aligned`); break;
      }
      if (box.classList.contains('opslib-table') && getComputedStyle(td).wordBreak !== 'keep-all') {
        problems.push(`table "${name}": Korean may break inside a word`); break;
      }
    }
  }
  for (const out of outputs) {
    const text = out.textContent;
    if (text.includes('\x1b[') || text.includes('\u241b['))
      problems.push(`escape codes in an output: ${text.slice(0, 80)}`);
  }
  const maths = root.querySelectorAll('mjx-container, .MathJax, .MathJax_Preview').length;
  if (maths) problems.push(`${maths} MathJax element(s): a dollar sign was typeset`);
  const title = (b) => (b.firstChild ? b.firstChild.textContent : '');  // not the detail
  const banners = [...root.querySelectorAll('.opslib-verdict')].map(title);
  return {problems, banners};
}"""

# The widest option label of a <select>, drawn in the select's own font.
_WIDEST_OPTION = """(select) => {
  const context = document.createElement('canvas').getContext('2d');
  const style = getComputedStyle(select);
  context.font = `${style.fontSize} ${style.fontFamily}`;
  return Math.max(...[...select.options].map((o) => context.measureText(o.text).width));
}"""


def _reads_well(page, name: str, zone: str = "KST") -> list[str]:
    """Issue 19's rules for one notebook on screen; every banner's time on the job's clock."""
    found = page.evaluate(READS_WELL, PANEL)
    problems = [f"{name}: {p}" for p in found["problems"]]
    for text in found["banners"]:
        if not re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d {zone}\b", text):
            problems.append(f"{name}: banner not on the job's clock ({zone}): {text!r}")
    return problems


def _ten_fit(page) -> list[str]:
    """08's compact view: one line a row, no sideways scroll, so ten rows and the header fit
    in well under a 1000 px window."""
    box = page.locator(f"{PANEL} .opslib-status > .opslib-table").first
    size = box.evaluate(
        "(b) => ({row: b.querySelector('tbody tr').getBoundingClientRect().height,"
        " head: b.querySelector('thead').getBoundingClientRect().height,"
        " wide: b.scrollWidth, room: b.clientWidth})"
    )
    tall = size["head"] + 10 * size["row"]
    problems = [] if tall < 600 else [f"08_status: ten rows take {tall:.0f} px"]
    if size["wide"] > size["room"] + 1:
        problems.append(f"08_status: the compact view scrolls ({size['wide']} > {size['room']})")
    return problems


def _shoot(page, name: str) -> Path:
    """The whole notebook at 1400 px wide: the window grows to its height for the picture."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        "(panel) => { const w = document.querySelector(panel + ' .jp-WindowedPanel-outer')"
        " || document.querySelector(panel + ' .jp-Notebook');"
        " return w ? w.scrollHeight : 1000; }",
        PANEL,
    )
    page.set_viewport_size({"width": 1400, "height": min(max(1000, height + 200), 12_000)})
    page.evaluate(  # from the first cell: Run All leaves the notebook scrolled to its end
        "(panel) => { for (const el of document.querySelectorAll(panel + ' .jp-WindowedPanel-outer,"
        " ' + panel + ' .jp-Notebook')) el.scrollTop = 0; }",
        PANEL,
    )
    page.wait_for_timeout(300)  # one layout after the scroll, before the picture
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})
    return path


def test_pick_a_preset_type_a_custom_and_an_invalid_expression(lab):
    chromium = _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    url, work = lab
    params = work / "parameters" / "my-job.yaml"  # the default name, under the copy's root
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}lab/tree/notebooks/{NOTEBOOK.name}")
            page.wait_for_function(KERNEL_IDLE, timeout=WAIT_MS)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            description = page.locator(".cron-description")
            runs = page.locator(".cron-next-runs li")
            status, error = page.locator(".cron-status"), page.locator(".cron-error")
            preset, custom = page.locator(".cron-preset select"), page.locator(".cron-custom input")

            # The file the notebook wrote, shown by the picker.
            expect(description).to_contain_text("월요일~금요일")
            expect(description).to_contain_text("At 09:00, Monday through Friday")
            expect(runs).to_have_count(5)
            expect(runs.first).to_contain_text("09:00 KST +09:00")
            assert load_spec(params).schedule.cron == "0 9 * * 1-5"

            # A preset: the expression, the sentences and the runs follow; the file is saved.
            preset.select_option(value=PRESETS[0].label)  # option values are the label texts
            expect(custom).to_have_value("*/30 * * * *")
            expect(description).to_contain_text("30분마다")
            expect(description).to_contain_text("Every 30 minutes")
            expect(page.locator(".cron-change")).to_contain_text(
                "0 9 * * 1-5 (Asia/Seoul) -> */30 * * * * (Asia/Seoul)"
            )
            expect(status).to_contain_text("saved to")
            expect(status).to_contain_text(": */30 * * * * in Asia/Seoul")
            assert load_spec(params).schedule.cron == "*/30 * * * *"
            # The summary below follows the file without re-running its cell.
            summary = page.locator(".quickstart-summary")
            expect(summary).to_contain_text("*/30 * * * * (Every 30 minutes) in Asia/Seoul")
            expect(summary).not_to_contain_text("0 9 * * 1-5")
            assert _hangul_has_glyphs(page, ".cron-ko"), (
                "Korean renders as identical boxes: install a CJK font (fonts-noto-cjk)"
            )

            # A custom expression syncs on Enter (continuous_update=False).
            custom.fill("15 10 * * 1")
            custom.press("Enter")
            expect(description).to_contain_text("10:15")
            expect(description).to_contain_text("월요일")
            expect(runs.first).to_contain_text("(월 Mon) 10:15 KST")
            expect(preset).to_have_value(CUSTOM_LABEL)
            expect(status).to_contain_text(": 15 10 * * 1 in Asia/Seoul")
            assert load_spec(params).schedule.cron == "15 10 * * 1"

            # An invalid one: the rule and its fix, no runs, nothing written.
            custom.fill("0 9 * * 1#2")
            custom.press("Enter")
            expect(error).to_contain_text("the day-of-week field '1#2' is not valid")
            said = error.inner_text()  # what is wrong first, then the general syntax
            assert said.index("'1#2' is not valid") < said.index("Cloud Scheduler takes"), said
            expect(error).to_contain_text("fix:")
            expect(status).to_contain_text("nothing written")
            expect(runs).to_have_count(0)
            assert load_spec(params).schedule.cron == "15 10 * * 1"
            widest = preset.evaluate(_WIDEST_OPTION)
            room = preset.evaluate("(s) => s.clientWidth")
            assert room >= widest + 16, f"the dropdown cuts its labels: {widest} px in {room}"
            assert _reads_well(page, "00_quickstart") == []
            assert _shoot(page, "00_quickstart").stat().st_size > 10_000
            assert errors == []
        finally:
            browser.close()


LAST_PROMPT_DONE = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
}"""


def _run_all(page, name: str) -> None:
    """Open a notebook, Run All, and wait until every code cell has run."""
    page.wait_for_function(
        "() => !!window.jupyterapp && window.jupyterapp.commands.hasCommand('docmanager:open')",
        timeout=3 * WAIT_MS,
    )
    page.evaluate(  # the widget it resolves to is not sent back (it cannot be serialised)
        "(path) => { window.jupyterapp.commands.execute('docmanager:open', {path}); }",
        f"notebooks/{name}.ipynb",
    )
    page.wait_for_function(
        "(name) => { const w = window.jupyterapp.shell.currentWidget;"
        " return !!w && w.title.label === name; }",
        arg=f"{name}.ipynb",
        timeout=WAIT_MS,
    )
    page.wait_for_function(KERNEL_IDLE, timeout=3 * WAIT_MS)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(LAST_PROMPT_DONE, timeout=3 * WAIT_MS)


STEPS = ("01_write_function", "02_patch_endpoint", "03_deploy", "04_schedule", "05_verify")
AFTER = ("06_secrets", "07_troubleshoot", "08_status")


def test_every_notebook_in_jupyterlab_reads_well_and_ends_with_a_verdict(lab, tmp_path):
    """Steps 1-5, secrets, the doctor and the status page, Run All in the browser on localcloud:
    each page passes issue 19's rules (no clipped table, no escape codes, no maths, banners on
    the job's clock, no empty table), each step ends with its banner, and every page is kept as
    a screenshot at 1400 px (00_quickstart's is taken by the picker's test)."""
    chromium = _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    url, work = lab
    root = work.parent
    copy_service(root / "service")
    (root / "parameters").mkdir(exist_ok=True)
    example = EXAMPLE.read_text()
    example = example.replace("service: batch-service", f"service: {lc.unique('lab')}")
    example = example.replace("name: fx-rates", f"name: {lc.unique('labjob')}")
    (root / "parameters" / "example.yaml").write_text(example)
    (root / ".env").write_text(f"{lc.unique('LAB_KEY').upper().replace('-', '_')}=not-shown\n")
    expect.set_options(timeout=3 * WAIT_MS)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(3 * WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}lab/tree/notebooks/01_write_function.ipynb")
            for name in STEPS + AFTER:
                _run_all(page, name)
                shown = page.locator(f"{PANEL} .jp-OutputArea-output")
                assert shown.filter(has_text="Traceback").count() == 0, name
                verdict = page.locator(f"{PANEL} .opslib-verdict").last
                expect(verdict).to_be_visible()
                if name == "05_verify":
                    expect(verdict).to_contain_text("PASSED  verify labjob-")
                elif name == "08_status":
                    expect(verdict).to_contain_text("status: 1 automation")
                    expect(page.locator(f"{PANEL} .opslib-full")).to_have_count(1)
                    problems += _ten_fit(page)
                else:
                    expect(verdict).to_contain_text("next: ")
                if name == "03_deploy":  # a real bar through the deploy's phases
                    bar = page.locator(f"{PANEL} .widget-hprogress, {PANEL} progress")
                    expect(bar.first).to_be_attached()
                problems += _reads_well(page, name)
                _shoot(page, name)
            assert page.locator(f"{PANEL} table th.row_heading").count() == 0
            assert errors == []
        finally:
            browser.close()
    assert problems == []
    for name in STEPS + AFTER:
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


BAD_PAGE = """<div class="jp-NotebookPanel"><div class="jp-OutputArea-output" style="width: 300px">
<div style="overflow-x: hidden; width: 300px"><table><thead><tr><th>wide</th></tr></thead>
<tbody><tr><td style="white-space: nowrap">{wide}</td></tr></tbody></table></div></div>
<div class="jp-OutputArea-output"><table><thead><tr><th>empty</th></tr></thead><tbody></tbody>
</table></div>
<div class="jp-OutputArea-output"><pre>\x1b[32m1 passed\x1b[0m</pre></div>
<div class="jp-OutputArea-output"><mjx-container>15/month</mjx-container></div>
<div class="jp-OutputArea-output"><div class="opslib-verdict">PASSED  verify j
  2026-12-08 00:00 UTC</div></div></div>"""


def test_the_page_checks_catch_each_fault_issue_19_found():
    """The rules above fail on a page with each fault: a clipped table, an empty one, escape
    codes, typeset maths, a banner on the wrong clock (so the notebook test can fail)."""
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_content(BAD_PAGE.format(wide="x " * 400))
            found = " | ".join(_reads_well(page, "bad", zone="KST"))
        finally:
            browser.close()
    for fault in ("is clipped", "is empty without", "escape codes", "MathJax", "job's clock"):
        assert fault in found, found
