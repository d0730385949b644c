"""Hostile files and everyday mistakes: refused with exit 2, the rule and the fix, nothing written.

A symlinked service_dir that leaves the project, a parameters file of megabytes, a value of
megabytes, conflicts between files that only `run` used to see, a new service folder that
inherited another service's jobs, and generated files (hypothesis) fed to `opslib check` and
`opslib endpoint --check`: never a traceback, nothing created anywhere.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from project import add_params, make_project

from conftest import EXAMPLE, copy_service, seed_service, tool
from opslib.cli.main import main


def opslib(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLIB_LOCALCLOUD")}
    return subprocess.run([tool("opslib"), *args], cwd=cwd, env=env, capture_output=True, text=True)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime: what "nothing written" compares."""
    found = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" not in path.parts:
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def _link_spec(project: Path, target: Path | None, name: str) -> Path:
    link = project / "services" / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target if target is not None else project.parent / f"gone-{name}")
    return add_params(
        project, name, service=f"svc-{name}", job={"name": name}, service_dir=f"services/{name}"
    )


@pytest.mark.parametrize("kind", ["to a folder outside", "dangling", "to an empty folder outside"])
def test_a_service_dir_through_a_symlink_out_of_the_project_is_refused(project, kind):
    outside = project.parent / "outside"
    if kind != "dangling":
        copy_service(outside) if kind == "to a folder outside" else outside.mkdir()
    params = _link_spec(project, None if kind == "dangling" else outside, "leaves")
    before, outside_before = tree(project), tree(project.parent)
    for args in (["check", str(params)], ["run", str(params), "--steps", "1-2"]):
        done = opslib(project, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        text = done.stderr
        assert "service_dir" in text and "services/leaves" in text and "outside" in text
        assert str(project.parent / ("outside" if kind != "dangling" else "gone-leaves")) in text
        assert "stays inside the project" in text
    assert tree(project) == before, "nothing written in the project (runs/ included)"
    assert tree(project.parent) == outside_before, "nothing created outside it"


def test_a_service_dir_option_out_of_the_project_is_refused(project, tmp_path):
    params = add_params(project, "a", job={"name": "a"})
    elsewhere = tmp_path / "elsewhere"
    before = tree(tmp_path)
    done = opslib(project, "scaffold", str(params), "--service-dir", str(elsewhere))
    assert done.returncode == 2 and "--service-dir" in done.stderr, done.stderr
    assert tree(tmp_path) == before


def test_a_huge_file_is_refused_before_parsing_and_a_huge_value_is_not_echoed(project):
    text = EXAMPLE.read_text()
    huge = project / "parameters" / "huge.yaml"
    huge.write_text(text + "#" + "x" * 5_000_000 + "\n")
    done = opslib(project, "check", str(huge))
    assert done.returncode == 2 and "over 256 KiB" in done.stderr
    assert len(done.stdout + done.stderr) < 1000
    long = project / "parameters" / "long.yaml"
    long.write_text(text.replace("Collect FX rates every weekday morning", "y" * 200_000))
    done = opslib(project, "check", str(long))
    assert done.returncode == 2 and "job.description" in done.stderr
    assert "… (200,002 characters)" in done.stderr  # its repr: the quotes count
    assert max(len(line) for line in done.stderr.splitlines()) < 400


def test_check_takes_folders_and_names_each_file_and_line_between_files(project):
    a = add_params(project, "a", job={"name": "same"})
    add_params(project, "b", job={"name": "same"}, deploy={"memory": "1Gi"})
    line = 1 + a.read_text().splitlines().index("  name: same")
    add_params(project, "c", service="other", job={"name": "c"})  # service/ too: no
    done = opslib(project / "service", "check", "../parameters")
    assert done.returncode == 2, done.stdout + done.stderr
    text = done.stderr
    assert f"parameters/a.yaml:{line} and parameters/b.yaml:{line} both name job 'same'" in text
    assert "deploy.memory is 2Gi in parameters/a.yaml:" in text and "parameters/b.yaml:" in text
    assert "parameters/a.yaml:" in text and "(other) both use the folder service" in text
    alone = opslib(project, "check", "parameters/a.yaml")  # b shares a's service: it counts
    assert alone.returncode == 2 and "deploy.memory is 2Gi in parameters/a.yaml:" in alone.stderr
    add_params(project, "b", job={"name": "b"})
    (project / "parameters" / "c.yaml").unlink()
    fine = opslib(project, "check", "parameters/a.yaml")
    assert fine.returncode == 0 and "parameters/a.yaml: valid" in fine.stdout, fine.stderr


def test_a_new_service_folder_holds_nothing_of_another_services_jobs(project):
    route = add_params(project, "route", job={"name": "route-job"})
    batch = project / "service" / "scripts" / "batch"
    (batch / "deep_backfill.py").write_text("def main():\n    pass\n")  # a Cloud Run job's
    (project / "service" / "tests").mkdir(exist_ok=True)
    (project / "service" / "tests" / "test_deep_backfill.py").write_text("def test(): pass\n")
    assert opslib(project, "scaffold", str(route)).returncode == 0
    assert opslib(project, "endpoint", str(route)).returncode == 0
    other = add_params(
        project, "other", service="report", job={"name": "report"}, service_dir="services/report"
    )
    done = opslib(project, "scaffold", str(other))
    assert done.returncode == 0, done.stderr
    made = project / "services" / "report"
    modules = sorted(p.name for p in (made / "scripts" / "batch").glob("*.py"))
    assert modules == ["__init__.py", "report.py"]
    tests = sorted(p.name for p in (made / "tests").glob("test_*.py"))
    assert tests == ["test_report.py"]
    assert "/run-route-job" not in (made / "batch_endpoint.py").read_text()


# --- generated files -------------------------------------------------------------------------

KEYS = [
    *("target", "project", "region", "service", "service_dir", "job", "schedule", "deploy"),
    *("secrets", "name", "cron", "time_zone", "memory", "cpu", "env", "body", "headers"),
    *("tasks", "runtime", "overlap", "retry", "count", "attempt_deadline", "description"),
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["900s", "2Gi", "0 9 * * 1-5", "Asia/Seoul", "../..", "/etc", "x" * 300]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), inner, max_size=5),
    ),
    max_leaves=12,
)


def _mutated(base: dict, edits: list[tuple[list[str], object]]) -> dict:
    data = yaml.safe_load(yaml.safe_dump(base))
    for path, value in edits:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return data


EDITS = st.lists(
    st.tuples(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), VALUES), max_size=4
)


def _run(args: list[str]) -> int:
    """The real CLI in this process (its main), stdout and stderr kept: never a traceback."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return main(args)
        except SystemExit as exc:  # argparse's usage errors
            return int(exc.code or 0)


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("fuzz") / "project")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS, raw=st.one_of(st.none(), st.text(max_size=200)))
def test_generated_parameters_files_never_crash_check(fuzz_project, edits, raw):
    base = yaml.safe_load(EXAMPLE.read_text())
    path = fuzz_project / "parameters" / "fuzz.yaml"
    text = raw if raw is not None else yaml.safe_dump(_mutated(base, edits), allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    before = tree(fuzz_project)
    cwd = Path.cwd()
    os.chdir(fuzz_project)
    try:
        code = _run(["check", str(path)])
    finally:
        os.chdir(cwd)
    assert code in (0, 2)
    assert tree(fuzz_project) == before, "check wrote something"


ROUTE = st.builds(
    lambda path, name, body: (
        f'\n\n@app.route("{path}", methods=["POST"])\ndef {name}():\n    {body}\n'
    ),
    st.text(alphabet="/-_abc{}<>:", min_size=0, max_size=12),
    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    st.sampled_from(
        [
            "return make_response('ok')",
            "from scripts.batch.x import x\n    return x()",
            "pass",
            "request.get_json(silent=True) or {}",
        ]
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    routes=st.lists(ROUTE, max_size=3),
    cut=st.integers(min_value=0, max_value=4000),
    noise=st.text(max_size=30),
)
def test_generated_endpoint_files_never_crash_the_checklist(fuzz_project, routes, cut, noise):
    folder = fuzz_project / "fuzz-service"
    if not folder.exists():
        copy_service(folder)
    source = (seed_service() / "batch_endpoint.py").read_text()
    source = source[:cut] + noise + source[cut:] + "".join(routes)
    (folder / "batch_endpoint.py").write_text(source, encoding="utf-8")
    before = tree(fuzz_project)
    assert _run(["endpoint", "--check", str(folder)]) in (0, 1, 2)
    assert tree(fuzz_project) == before, "the checklist wrote something"


# --- printed fixes, run as printed ------------------------------------------------------------


def _printed(text: str, before: str, after: str) -> list[str]:
    """The command a message prints between `before` and `after`, split as a shell would."""
    import shlex

    start = text.index(before) + len(before)
    return shlex.split(text[start : text.index(after, start)])


def test_the_refusal_and_destroy_print_commands_that_work_as_printed(project):
    import lc

    from opslib.fleet.load import open_fleet
    from opslib.spec import names
    from opslib.steps.deploy.desired import live_routes

    service = lc.unique("fix")
    for stem in ("a", "b"):
        add_params(project, stem, service=service, job={"name": lc.unique(f"fix-{stem}")},
                   deploy={"min_instances": 0})  # fmt: skip
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [tool("opslib"), *args]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)

    fleet = open_fleet(project / "parameters")
    try:
        first = run("run", "parameters/a.yaml", "parameters/b.yaml", "--steps", "1-4")
        assert first.returncode == 0, first.stdout + first.stderr
        shutil.rmtree(project / "service")  # a teammate's checkout: the seed's folder
        copy_service(project / "service")
        refused = run("run", "parameters/a.yaml", "--steps", "1-3")
        assert refused.returncode == 1 and "refused before any change" in refused.stdout
        fix = _printed(refused.stdout, "add the jobs back to ", " (steps 1-3")
        fix = fix[1:] if fix[0].endswith(":") else fix  # the folder, then the command
        assert fix[:2] == ["opslib", "run"] and "parameters/b.yaml" in fix, fix
        done = run(*fix[1:])
        assert done.returncode == 0, done.stdout + done.stderr
        spec_b = fleet.sessions[1].spec
        live = lc.clients().run.get_service(name=names.service(spec_b))
        assert spec_b.job.route in (live_routes(live) or []), "b's route is served again"

        gone = run("destroy", "parameters/b.yaml")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        back = _printed(gone.stdout, "or `", "` brings the job back")
        assert back == ["opslib", "run", "parameters"], back
        assert run(*back[1:]).returncode == 0
        assert lc.clients().scheduler.get_job(name=names.scheduler_job(spec_b)).name
    finally:
        clients = lc.clients()
        for session in fleet.sessions:
            with contextlib.suppress(Exception):
                clients.scheduler.delete_job(name=names.scheduler_job(session.spec))
        with contextlib.suppress(Exception):
            clients.run.delete_service(name=names.service(fleet.sessions[0].spec)).result(60)
