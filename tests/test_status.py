"""`opslib status` against the session's real localcloud: a fleet of 3 jobs on 2 services,
deployed, scheduled and verified through the fleet steps, then every column checked; drift
after a file changes, a failed row after a job raises, missing and paused rows; the number of
API calls; the CLI's exit code; the 08_status notebook.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lc
import nbformat
import pandas as pd
import pytest
import yaml
from google.api_core import exceptions
from lc import call

from conftest import EXAMPLE, ROOT, copy_service, tool
from opslib.core.errors import OpslibError
from opslib.fleet import status
from opslib.fleet import steps as fleet_steps
from opslib.fleet.load import Fleet, open_fleet
from opslib.fleet.status import view as _view  # noqa: F401  (loads status.view)
from opslib.spec import cron, names
from opslib.spec import cron_report as cron_view
from opslib.steps import schedule as step4
from opslib.steps.scaffold import module_path

CRON = {"a": "0 9 * * 1-5", "b": "30 7 * * *", "c": "0 18 * * *"}
ZONE = {"a": "Asia/Seoul", "b": "Asia/Seoul", "c": "Asia/Tokyo"}


@pytest.fixture(autouse=True)
def localcloud(monkeypatch):
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)


def write_spec(folder: Path, name: str, service: str, job_id: str, **changes) -> Path:
    """example.yaml for one job (no min instance kept warm), with `changes` merged in."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"], data["region"] = service, lc.REGION
    data["job"] = {"name": job_id, "description": f"status test {name}"}
    data["schedule"] |= {"cron": CRON.get(name, "0 9 * * *"), "time_zone": ZONE.get(name, "UTC")}
    data["deploy"]["min_instances"] = 0
    for key, value in changes.items():
        data[key] = data[key] | value if isinstance(value, dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A project: jobs a and b on one service (service/), c on its own (services/<id>), all
    through steps 1-5; deleted from localcloud afterwards."""
    root = tmp_path_factory.mktemp("status")
    copy_service(root / "service")
    folder = root / "parameters"
    folder.mkdir()
    one, two = lc.unique("st"), lc.unique("st")
    write_spec(folder, "a", one, lc.unique("job-a"))
    write_spec(folder, "b", one, lc.unique("job-b"))
    write_spec(folder, "c", two, lc.unique("job-c"), service_dir=f"services/{two}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)
        fleet = open_fleet(folder)
        try:
            steps_1_to_5(fleet)
            yield root
        finally:
            clean_up(fleet)


def steps_1_to_5(fleet: Fleet) -> None:
    fleet_steps.write_functions(fleet)
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)
    verdict = fleet_steps.verify(fleet, progress=False)
    assert verdict.passed, verdict.summary().to_string()


def clean_up(fleet: Fleet) -> None:
    """No job of this module fires when later tests move localcloud's clock."""
    for session in fleet.sessions:
        step4.delete(session.spec, session.clients)
    for sessions in fleet.services.values():
        name = names.service(sessions[0].spec)
        sessions[0].clients.run.delete_service(name=name).result(timeout=60)


def fleet_of(project: Path, folder: str = "parameters") -> Fleet:
    return open_fleet(project / folder)


def by_job(frame: pd.DataFrame, fleet: Fleet) -> dict[str, pd.Series]:
    """Rows by the file they come from (a, b, c, ...)."""
    names = {s.spec.job.name: s.params.stem for s in fleet.sessions}
    return {names[row["job"]]: row for _, row in frame.iterrows()}


def copy_parameters(project: Path, name: str) -> Path:
    """A second parameters folder in the project, to change files without touching the first."""
    folder = project / name
    shutil.copytree(project / "parameters", folder)
    return folder


def opslib_status(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    command = [tool("opslib"), "status", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=project, env=env)


def mark() -> int:
    return call("/_localcloud/calls?since=1000000000")[1]["next"]


def calls_since(start: int) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in call(f"/_localcloud/calls?since={start}")[1]["calls"]]


def on_clock(when: datetime, zone: str) -> pd.Timestamp:
    return pd.Timestamp(when.astimezone(cron.zone_info(zone)).replace(microsecond=0))


# --- the tests -------------------------------------------------------------------------------


def test_every_column_of_a_healthy_fleet(project):
    fleet = fleet_of(project)
    frame = status.status(fleet, since="1h")
    assert list(frame.columns) == list(status.COLUMNS)
    rows = by_job(frame, fleet)
    assert sorted(rows) == ["a", "b", "c"]
    clients = fleet.sessions[0].clients
    for session in fleet.sessions:
        spec, row = session.spec, rows[session.params.stem]
        live = clients.scheduler.get_job(name=names.scheduler_job(spec))
        service = clients.run.get_service(name=names.service(spec))
        zone = ZONE[session.params.stem]
        assert (row["service"], row["job"]) == (spec.service, spec.job.name)
        assert (row["health"], row["state"], row["drift"]) == ("ok", "enabled", "")
        assert (row["cron"], row["time_zone"]) == (CRON[session.params.stem], zone)
        assert row["cron_ko"] == cron_view.describe_ko(row["cron"])
        assert row["cron_en"] == cron_view.describe_en(row["cron"])
        assert row["next_run"] == on_clock(live.schedule_time, zone)
        assert str(row["next_run"].tz) == zone
        hour, minute = (int(v) for v in reversed(row["cron"].split()[:2]))
        assert (row["next_run"].hour, row["next_run"].minute) == (hour, minute)
        assert row["last_attempt"] == on_clock(live.last_attempt_time, zone)
        assert row["last_status"] == "OK"
        assert str(row["last_run"].tz) == zone
        assert abs(row["last_run"] - row["last_attempt"]) < pd.Timedelta(seconds=30)
        assert row["run_status"] == "success"
        assert 0 <= row["duration_s"] < 30
        assert (row["processed"], row["errors"]) == (0, 0)  # the generated job processes nothing
        assert row["revision"] == service.latest_ready_revision.rsplit("/", 1)[-1]
    assert rows["a"]["revision"] == rows["b"]["revision"] != rows["c"]["revision"]
    assert rows["a"]["cron_en"] == "At 09:00, Monday through Friday"
    assert "09:00" in rows["a"]["cron_ko"] and "월요일" in rows["a"]["cron_ko"]
    assert status.healthy(frame)
    assert status.summary(frame) == "3 automations: 3 healthy, 0 failed, 0 drifted"


def test_one_call_per_location_and_service_and_one_entries_list(project):
    """Per location one jobs:list and one services:list, one IAM read per service (the
    invokers step 3 grants), one entries:list: not one call more for a third job."""
    fleet = fleet_of(project)
    start = mark()
    frame = status.status(fleet, since="1h")
    parent = f"/projects/{lc.PROJECT}/locations/{lc.REGION}"
    services = sorted({names.service(s.spec) for s in fleet.sessions})
    assert len(services) == 2
    assert sorted(calls_since(start)) == sorted(
        [
            ("GET", f"/v1{parent}/jobs"),
            ("GET", f"/v2{parent}/services"),
            *[("GET", f"/v2/{name}:getIamPolicy") for name in services],
            ("POST", "/v2/entries:list"),
        ]
    )
    assert len(frame) == 3


def test_drift_names_each_field_and_the_cli_exits_1(project):
    folder = copy_parameters(project, "drifted")
    b, c = folder / "b.yaml", folder / "c.yaml"
    b.write_text(b.read_text().replace(CRON["b"], "0 8 * * *"))
    data = yaml.safe_load(c.read_text())
    data["deploy"]["memory"] = "1Gi"
    data["secrets"] = {"API_KEY": "api-key:latest"}
    c.write_text(yaml.safe_dump(data, sort_keys=False))
    fleet = fleet_of(project, "drifted")

    rows = by_job(status.status(fleet, since="1h"), fleet)
    assert (rows["b"]["health"], rows["b"]["drift"]) == (
        "drifted",
        "schedule: '30 7 * * *' -> '0 8 * * *'",
    )
    assert rows["b"]["cron"] == "30 7 * * *", "the cron column is the live one, which fires"
    assert rows["c"]["health"] == "drifted"
    assert (
        rows["c"]["drift"] == "memory: '2Gi' -> '1Gi'; secrets: {} -> {'API_KEY': 'api-key:latest'}"
    )
    assert (rows["a"]["health"], rows["a"]["drift"]) == ("ok", "")

    drifted = opslib_status(project, "drifted")
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "schedule: '30 7 * * *' -> '0 8 * * *'" in drifted.stdout
    assert "UNHEALTHY  status: 3 automations: 1 healthy, 0 failed, 2 drifted  " in drifted.stdout
    clean = opslib_status(project)  # the project's parameters/ folder, from the cwd
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "HEALTHY  status: 3 automations: 3 healthy, 0 failed, 0 drifted  " in clean.stdout


def test_missing_and_paused_rows(project):
    folder = copy_parameters(project, "more")
    service_a = yaml.safe_load((folder / "a.yaml").read_text())["service"]
    write_spec(folder, "d", service_a, lc.unique("job-d"))  # never scheduled, not in the source
    write_spec(folder, "e", lc.unique("gone"), lc.unique("job-e"), service_dir="services/gone")
    fleet = fleet_of(project, "more")
    a = next(s for s in fleet.sessions if s.params.stem == "a")
    step4.pause(a.spec, a.clients)
    try:
        frame = status.status(fleet, since="1h")
    finally:
        step4.resume(a.spec, a.clients)
    rows = by_job(frame, fleet)
    assert (rows["a"]["health"], rows["a"]["state"]) == ("paused", "paused")
    assert pd.isna(rows["a"]["next_run"]) and rows["a"]["last_status"] == "OK"
    for name in ("d", "e"):
        row = rows[name]
        assert (row["health"], row["state"], row["last_status"]) == ("missing", "missing", "no job")
        assert (row["cron"], row["time_zone"]) == ("0 9 * * *", "Etc/UTC"), "the file's"
        assert pd.isna(row["next_run"]) and pd.isna(row["last_attempt"])
        assert pd.isna(row["last_run"]) and pd.isna(row["processed"])
    assert rows["d"]["drift"] == "", "steps 3-4 change nothing for d: it has no job yet"
    assert rows["d"]["revision"] == rows["b"]["revision"] and rows["e"]["revision"] == ""
    assert not status.healthy(frame)
    assert status.summary(frame) == (
        "5 automations: 3 healthy (1 paused), 0 failed, 0 drifted, 2 missing"
    )


def test_a_job_that_raises_is_a_failed_row(project):
    fleet = fleet_of(project)
    c = next(s for s in fleet.sessions if s.params.stem == "c")
    module = module_path(c.spec, c.service_dir)
    source = module.read_text()
    before = by_job(status.status(fleet, since="1h"), fleet)["c"]["revision"]
    module.write_text(
        source.replace("    result = {", "    raise RuntimeError('boom')\n    result = {", 1)
    )
    try:
        fleet_steps.deploy(fleet, progress=False)
        verdict = fleet_steps.verify(fleet, progress=False)
        assert [v.passed for v in verdict.verdicts.values()] == [True, True, False]

        rows = by_job(status.status(fleet, since="1h"), fleet)
        row = rows["c"]
        assert (row["health"], row["state"], row["drift"]) == ("failed", "enabled", "")
        assert row["last_status"].startswith("INTERNAL")
        assert (row["run_status"], row["errors"]) == ("error", 1)
        assert pd.isna(row["processed"]) and row["revision"] != before
        assert rows["a"]["health"] == rows["b"]["health"] == "ok"
        failed = opslib_status(project, "parameters")
        assert failed.returncode == 1
        assert "UNHEALTHY  status: 3 automations: 2 healthy, 1 failed, 0 drifted" in failed.stdout
    finally:
        module.write_text(source)
        fleet_steps.deploy(fleet, progress=False)
        assert fleet_steps.verify(fleet, progress=False).passed


def test_the_notebook_shows_the_styled_table(project, tmp_path):
    out = tmp_path / "08_status.ipynb"
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    command = [tool("papermill"), str(ROOT / "notebooks" / "08_status.ipynb"), str(out)]
    command += ["-p", "params", str(project / "parameters"), "-p", "since", "1h"]
    result = subprocess.run(
        [*command, "-k", "python3", "--no-progress-bar"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    job_c = yaml.safe_load((project / "parameters" / "c.yaml").read_text())["job"]["name"]
    table = html.split("opslib-verdict")[0]  # the banner below the table is coloured
    assert "<table" in table and job_c in table
    assert not any(c in table for c in status.COLOURS.values()), "all ok: no row stands out"
    assert "<details" in table, "every column one click away"
    assert "HEALTHY  status: 3 automations" in html
    texts = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "HEALTHY  status: 3 automations: 3 healthy, 0 failed, 0 drifted" in texts


# --- without localcloud: the rules and the rendering -----------------------------------------


def row(**fields) -> dict:
    base = {
        "state": "enabled",
        "run_status": "success",
        "errors": 0,
        "drift": "",
    }
    return base | fields


@pytest.mark.parametrize(
    ("fields", "attempt_failed", "word"),
    [
        ({}, False, "ok"),
        ({"state": "missing", "run_status": "error"}, True, "missing"),
        ({}, True, "failed"),
        ({"run_status": "error"}, False, "failed"),
        ({"errors": 2}, False, "failed"),
        ({"state": "update_failed"}, False, "failed"),
        ({"drift": "cron: 'x' -> 'y'", "errors": 1}, False, "failed"),
        ({"drift": "cron: 'x' -> 'y'", "state": "paused"}, False, "drifted"),
        ({"state": "paused", "run_status": None, "errors": None}, False, "paused"),
    ],
)
def test_health_is_the_worst_that_applies(fields, attempt_failed, word):
    assert status.health(row(**fields), attempt_failed) == word


def frame_of(*healths: str) -> pd.DataFrame:
    rows = [
        {name: None for name in status.COLUMNS} | {"health": h, "drift": "", "job": f"j{i}"}
        for i, h in enumerate(healths)
    ]
    return status.table(
        [r | {"processed": 1, "errors": 0, "duration_s": 0.5, "service": "s"} for r in rows]
    )


def test_summary_counts_each_row_once_and_healthy_allows_paused():
    frame = frame_of("ok", "paused", "failed", "drifted", "missing", "drifted")
    assert status.summary(frame) == (
        "6 automations: 2 healthy (1 paused), 1 failed, 2 drifted, 1 missing"
    )
    assert status.summary(frame_of("ok")) == "1 automation: 1 healthy, 0 failed, 0 drifted"
    assert status.healthy(frame_of("ok", "paused")) and not status.healthy(frame_of("drifted"))
    assert str(frame["processed"].dtype) == "Int64" and frame["duration_s"].dtype == "float64"


def test_styled_colours_failed_and_missing_red_drifted_amber():
    html = status.styled(frame_of("ok", "failed", "drifted", "missing", "paused")).to_html()
    colours = {h: status.COLOURS.get(h) for h in ("failed", "drifted", "missing", "paused")}
    assert colours["failed"] == colours["missing"] != colours["drifted"]
    for colour in colours.values():
        assert f"background-color: {colour}" in html


def test_cli_text_cuts_long_cells_and_prints_each_drift_in_full():
    frame = frame_of("drifted", "ok")
    long = "; ".join(f"field{i}: 'a' -> 'b'" for i in range(10))
    frame.loc[0, "drift"] = long
    text = status.to_text(frame, width=30)
    assert long not in text.split("drift (live -> file):")[0]
    assert f"  j0: {long}" in text


def test_log_filter_reads_only_the_end_lines_of_the_fleet(tmp_path):
    copy_service(tmp_path / "service")
    (tmp_path / "parameters").mkdir()
    for name, service in (("a", "svc-one"), ("b", "svc-one"), ("c", "svc-two")):
        folder = {"service_dir": "services/svc-two"} if name == "c" else {}
        write_spec(tmp_path / "parameters", name, service, f"job-{name}", **folder)
    specs = [s.spec for s in open_fleet(tmp_path / "parameters").sessions]
    since = datetime(2026, 3, 2, tzinfo=UTC) - timedelta(hours=24)
    text = status.log_filter(specs, since)
    assert text == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name=("svc-one" OR '
        '"svc-two") AND jsonPayload.job=("job-a" OR "job-b" OR "job-c") AND '
        'jsonPayload.duration_ms:* AND timestamp>="2026-03-01T00:00:00Z"'
    )


def test_an_unreachable_target_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    copy_service(tmp_path / "service")
    (tmp_path / "parameters").mkdir()
    write_spec(tmp_path / "parameters", "a", "svc-one", "job-a")
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(OpslibError, match="cannot reach the target") as caught:
        status.status(open_fleet(tmp_path / "parameters"))
    assert "opslib localcloud start" in caught.value.fix


def cloud_run_job_fleet(tmp_path: Path) -> Fleet:
    """A route job and a `runtime: job` automation (2 tasks) built from the same folder."""
    copy_service(tmp_path / "service")
    folder = tmp_path / "parameters"
    folder.mkdir()
    write_spec(folder, "a", "svc-one", "job-a")
    backfill = {"runtime": "job", "tasks": 2, "parallelism": 1, "max_retries": 1}
    write_spec(folder, "n", "svc-one", "backfill", job=backfill | {"task_timeout": "3h"})
    return open_fleet(folder)


def test_a_cloud_run_job_row_reads_its_job_execution_and_tasks(tmp_path):
    """runtime: job on the real localcloud: deployed, scheduled and run by the fleet steps;
    its row reads the newest execution and every task's end line; a parallelism changed in
    the file is drift; a task that fails makes the row failed."""
    folder = tmp_path / "project" / "parameters"
    copy_service(folder.parent / "service")
    folder.mkdir()
    job = {"name": lc.unique("backfill"), "runtime": "job", "tasks": 2, "parallelism": 2}
    params = write_spec(folder, "n", lc.unique("svc"), "x", job=job | {"max_retries": 0})
    fleet = open_fleet(params)
    try:
        fleet_steps.write_functions(fleet)
        fleet_steps.patch_endpoints(fleet)
        fleet_steps.deploy(fleet, progress=False)
        fleet_steps.schedule(fleet)
        verdict = fleet_steps.verify(fleet, progress=False)
        assert verdict.passed, verdict.checks.to_string()
        row = status.status(fleet, since="1h").iloc[0]
        execution = verdict.tasks  # one row per task of the execution verify judged
        assert (row["state"], row["health"], row["drift"]) == ("enabled", "ok", "")
        assert row["revision"].startswith(job["name"]) and len(execution) == 2
        assert (row["run_status"], row["processed"], row["errors"]) == ("success", 0, 0)
        assert row["last_run"] >= row["last_attempt"] - pd.Timedelta(seconds=5)

        data = yaml.safe_load(params.read_text())
        data["job"]["parallelism"] = 1
        params.write_text(yaml.safe_dump(data, sort_keys=False))
        drifted = status.status(open_fleet(params), since="1h").iloc[0]
        assert (drifted["health"], drifted["drift"]) == ("drifted", "parallelism: 2 -> 1")

        session = fleet.sessions[0]
        module = module_path(session.spec, session.service_dir)
        module.write_text(module.read_text().replace(
            "    # Each task takes its share", "    raise RuntimeError('no archive')\n"
            "    # Each task takes its share", 1))  # fmt: skip
        broken = open_fleet(params)
        fleet_steps.deploy(broken, progress=False)
        assert not fleet_steps.verify(broken, progress=False).passed
        failed = status.status(broken, since="1h").iloc[0]
        assert (failed["health"], failed["run_status"]) == ("failed", "error")
    finally:
        clean_up_job(fleet)


def clean_up_job(fleet: Fleet) -> None:
    for session in fleet.sessions:
        step4.delete(session.spec, session.clients)
        name = names.run_job(session.spec)
        with contextlib.suppress(exceptions.NotFound):
            session.clients.jobs.delete_job(name=name).result(timeout=60)


def test_log_filter_of_route_jobs_and_cloud_run_jobs_together(tmp_path):
    specs = [s.spec for s in cloud_run_job_fleet(tmp_path).sessions]
    assert status.log_filter(specs, datetime(2026, 3, 1, tzinfo=UTC)) == (
        '((resource.type="cloud_run_revision" AND resource.labels.service_name=("svc-one") AND '
        'jsonPayload.job=("job-a")) OR (resource.type="cloud_run_job" AND '
        'resource.labels.job_name=("backfill"))) AND jsonPayload.duration_ms:* AND '
        'timestamp>="2026-03-01T00:00:00Z"'
    )


def test_the_page_opens_on_a_compact_view_worst_first_with_every_column_one_click_away():
    frame = frame_of("ok", "paused", "drifted", "failed", "ok", "missing")
    frame.loc[2, "drift"] = "schedule: '0 9 * * *' -> '0 10 * * *'; memory: '1Gi' -> '2Gi'"
    frame.loc[0, "run_status"], frame.loc[0, "last_status"] = "success", "OK"
    frame.loc[1, "last_status"] = "OK"
    short = status.compact(frame)
    assert tuple(short.columns) == status.view.COMPACT
    assert list(short["health"]) == ["failed", "missing", "drifted", "paused", "ok", "ok"]
    assert short.loc[short["job"] == "j2", "drift"].item() == "schedule, memory"
    assert short.loc[short["job"] == "j0", "drift"].item() == "none", "said, not left blank"
    assert short.loc[short["job"] == "j0", "status"].item() == "success", "the run's, first"
    assert short.loc[short["job"] == "j1", "status"].item() == "OK", "else the attempt's"
    html = status.page(frame)._repr_html_()
    compact_html, full_html = html.split("<details", 1)
    assert "every column" in full_html and "0 9 * * *" in full_html and "-&gt; " in full_html
    assert "text-align: left" in compact_html and "overflow-x: auto" in compact_html
    assert "duration_s" not in html and "500 ms" in full_html, "durations in human units"
    assert compact_html.index(">j3<") < compact_html.index(">j0<"), "failed before ok"
