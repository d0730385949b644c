"""Step 2 on varied hand-written endpoint files: additions only, idempotent, conflicts refused."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import DATA, merge, tool
from opslib.core.errors import BadInput
from opslib.spec.loader import load_spec
from opslib.steps.endpoint import serve as localserve
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.endpoint.source import parse
from opslib.steps.scaffold import scaffold

ENDPOINTS = DATA / "endpoints"
HAND_WRITTEN = ["template", "seed_style", "two_space_dict_entries", "module_constant_one_line"]


def use_file(service_dir: Path, name: str) -> Path:
    target = service_dir / "batch_endpoint.py"
    if name != "template":
        shutil.copy(ENDPOINTS / f"{name}.py", target)
    return target


@pytest.mark.parametrize("name", HAND_WRITTEN)
@pytest.mark.parametrize("pattern", ["function", "class"])
def test_patch_adds_route_and_entry_only(service_dir, write_params, name, pattern):
    path = use_file(service_dir, name)
    original = path.read_text()
    spec = load_spec(write_params(job={"pattern": pattern}))
    plan = patch_endpoint(spec, service_dir)
    assert [c.action for c in plan.changes] == ["create", "create"]
    patched = path.read_text()
    assert_nothing_lost(original, patched)
    compile(patched, str(path), "exec")
    info = parse(patched)
    assert info.route_for("/run-fx-rates") is not None
    assert info.is_registered("/run-fx-rates")
    # Running it again leaves the file byte-identical and untouched.
    stamp = path.stat().st_mtime_ns
    again = patch_endpoint(spec, service_dir)
    assert [c.action for c in again.changes] == ["no change", "no change"]
    assert path.read_text() == patched and path.stat().st_mtime_ns == stamp


def assert_nothing_lost(before: str, after: str) -> None:
    """Every original line survives; a changed line (one-line list, import) only grows."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    for line in diff:
        if line.startswith("- "):
            old = line[2:].rstrip(")]")
            grown = any(new.startswith(old) or _more_names(old, new) for new in added)
            assert grown, f"lost or rewritten: {line}"


def _more_names(old: str, new: str) -> bool:
    """`from m import a, b` became `from m import a, b, c` in isort's order: only names added."""
    pattern = re.compile(r"from (\S+) import (.+)")
    was, now = pattern.fullmatch(old.strip()), pattern.fullmatch(new.strip())
    if not (was and now) or was.group(1) != now.group(1):
        return False
    names = lambda m: {n.strip() for n in m.group(2).strip("()").split(",") if n.strip()}  # noqa: E731
    return names(was) <= names(now)


def test_entries_follow_the_list_style(service_dir, write_params):
    spec = load_spec(write_params())
    use_file(service_dir, "seed_style")
    patch_endpoint(spec, service_dir)
    text = (service_dir / "batch_endpoint.py").read_text()
    assert "        '/run-legacy',  # the old nightly job\n        '/run-fx-rates',\n    ]" in text
    assert "@app.route('/run-fx-rates', methods=['POST'])" in text
    assert "from scripts.common.logs import job_run\n" in text

    use_file(service_dir, "two_space_dict_entries")
    patch_endpoint(spec, service_dir)
    text = (service_dir / "batch_endpoint.py").read_text()
    health, added = (
        '{"path": "/health", "method": "GET"}',
        '{"path": "/run-fx-rates", "method": "POST"}',
    )
    assert f"      {health},\n      {added},\n" in text
    assert "from flask import (\n  Flask,\n  jsonify,\n  request,\n)" in text
    assert "\n  with (\n" in text and "\n  ):\n    if held.skipped:\n      return jsonify(" in text
    assert "\n      return jsonify(held.response(make_response))\n    try:\n" in text

    use_file(service_dir, "module_constant_one_line")
    patch_endpoint(spec, service_dir)
    text = (service_dir / "batch_endpoint.py").read_text()
    assert 'ENDPOINTS = ["GET /health", "POST /run-fx-rates"]' in text
    assert text.endswith("# trailing comment at the end of the file\n")


@pytest.mark.parametrize("name", ["seed_style", "two_space_dict_entries"])
def test_patched_hand_written_service_runs_the_job(service_dir, write_params, name):
    use_file(service_dir, name)
    (service_dir / "scripts" / "batch" / "legacy.py").write_text(
        "def do_something(dry_run=False):\n    return {'processed': 1, 'errors': 0}\n"
    )
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    with localserve.serving(service_dir) as base:
        answer = requests.post(f"{base}/run-fx-rates", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["processed"] == 0


LEGACY_JOB = "def do_something(dry_run=False):\n    return {'processed': 1, 'errors': 0}\n"


def test_existing_route_for_the_same_job_is_left_alone(service_dir, write_params):
    path = use_file(service_dir, "seed_style")
    (service_dir / "scripts" / "batch" / "legacy.py").write_text(LEGACY_JOB)
    before = path.read_bytes()
    spec = load_spec(write_params(job={"name": "legacy"}, schedule={"body": {}}))
    plan = patch_endpoint(spec, service_dir)
    assert [c.action for c in plan.changes] == ["no change", "no change"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("overrides", "legacy_module", "words"),
    [
        (
            {"schedule": {"http_method": "PUT", "body": {}}},
            LEGACY_JOB,
            "for POST, but schedule.http_method is PUT",
        ),
        ({"schedule": {"body": {}}}, None, "imports do_something from scripts.batch.legacy"),
        (
            {"job": {"pattern": "class"}, "schedule": {"body": {}}},
            "def legacy(dry_run=False):\n    return {'processed': 1, 'errors': 0}\n",
            "step 1 writes Legacy there (class pattern)",
        ),
    ],
    ids=["method", "imported-name", "pattern"],
)
def test_existing_route_that_differs_is_a_conflict(
    service_dir, write_params, overrides, legacy_module, words
):
    path = use_file(service_dir, "seed_style")
    if legacy_module:
        (service_dir / "scripts" / "batch" / "legacy.py").write_text(legacy_module)
    before = path.read_bytes()
    spec = load_spec(write_params(**merge({"job": {"name": "legacy"}}, overrides)))
    with pytest.raises(BadInput) as info:
        patch_endpoint(spec, service_dir)
    assert words in str(info.value) and "/run-legacy" in str(info.value)
    assert info.value.fix
    assert path.read_bytes() == before


def test_route_with_another_target_is_a_conflict(service_dir, write_params):
    path = use_file(service_dir, "seed_style")
    path.write_text(path.read_text().replace("scripts.batch.legacy", "scripts.batch.other"))
    before = path.read_bytes()
    spec = load_spec(write_params(job={"name": "legacy"}, schedule={"body": {}}))
    with pytest.raises(BadInput) as info:
        patch_endpoint(spec, service_dir)
    assert "runs scripts.batch.other" in str(info.value) and "/run-legacy" in str(info.value)
    assert path.read_bytes() == before


def test_function_name_taken_is_a_conflict(service_dir, write_params):
    path = use_file(service_dir, "template")
    path.write_text(path.read_text() + "\n\ndef run_fx_rates():\n    return 'mine'\n")
    before = path.read_bytes()
    with pytest.raises(BadInput) as info:
        patch_endpoint(load_spec(write_params()), service_dir)
    assert "run_fx_rates already exists" in str(info.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t + "\ndef broken(:\n", "not valid Python"),
        (lambda t: t.replace("def make_response", "def make_reply"), "lacks make_response"),
        (
            lambda t: t.replace('    endpoints = [\n        "/health",\n    ]\n', "").replace(
                '"endpoints": endpoints,', ""
            ),
            "no endpoint list",
        ),
    ],
    ids=["syntax", "helpers", "no-index-list"],
)
def test_bad_files_are_refused_and_left_as_they_were(service_dir, write_params, edit, message):
    path = use_file(service_dir, "template")
    path.write_text(edit(path.read_text()))
    before = path.read_bytes()
    with pytest.raises(BadInput) as info:
        patch_endpoint(load_spec(write_params()), service_dir)
    assert message in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.glob(".batch_endpoint.py.*")] == []


def test_dry_run_writes_nothing(service_dir, write_params):
    path = use_file(service_dir, "template")
    before = path.read_bytes()
    plan = patch_endpoint(load_spec(write_params()), service_dir, dry_run=True)
    assert [c.action for c in plan.changes] == ["create", "create"]
    assert path.read_bytes() == before


def test_cli_endpoint(service_dir, write_params):
    params = str(write_params())
    run = [tool("opslib"), "endpoint", params, "--service-dir", str(service_dir)]
    first = subprocess.run(run, capture_output=True, text=True)
    assert first.returncode == 0 and "create" in first.stdout
    second = subprocess.run(run, capture_output=True, text=True)
    assert second.returncode == 0 and "create" not in second.stdout


SEED = (DATA / "endpoints" / "seed_style.py").read_text()
TEMPLATE_INDEX = '    endpoints = [\n        "/health",\n    ]\n'
ENTRY_SHAPES = {
    "constant-name": (
        lambda t: t.replace(TEMPLATE_INDEX, "    endpoints = [HEALTH]\n").replace(
            "app = Flask", 'HEALTH = "/health"\napp = Flask'
        ),
        'endpoints = [HEALTH, "/run-fx-rates"]',
    ),
    "f-string": (
        lambda t: t.replace('"/health",', 'f"/health",'),
        '        f"/health",\n        "/run-fx-rates",\n    ]',
    ),
    "dict-with-text": (
        lambda t: t.replace(
            TEMPLATE_INDEX,
            '    endpoints = [\n        {"path": "/run-a", "method": "PUT",'
            ' "description": "Collect A", "owner": "ops"},\n    ]\n',
        ),
        '        {"path": "/run-fx-rates", "method": "POST", "description": "Collect FX rates '
        'every weekday morning", "owner": ""},\n    ]',
    ),
}


@pytest.mark.parametrize("shape", ENTRY_SHAPES)
def test_other_index_entry_shapes_register_once(service_dir, write_params, shape):
    edit, expected = ENTRY_SHAPES[shape]
    path = use_file(service_dir, "template")
    path.write_text(edit(path.read_text()))
    spec = load_spec(write_params())
    patch_endpoint(spec, service_dir)
    patched = path.read_bytes()
    assert expected in patched.decode(), patched.decode()
    assert parse(patched.decode()).is_registered("/run-fx-rates")
    again = patch_endpoint(spec, service_dir)
    assert [c.action for c in again.changes] == ["no change", "no change"]
    assert path.read_bytes() == patched


def test_crlf_file_keeps_its_line_ends(service_dir, write_params):
    path = service_dir / "batch_endpoint.py"
    original = SEED.replace("\n", "\r\n").encode()
    path.write_bytes(original)
    spec = load_spec(write_params())
    patch_endpoint(spec, service_dir)
    patched = path.read_bytes()
    assert patched.count(b"\n") == patched.count(b"\r\n"), "a line lost its \\r"
    assert_nothing_lost(original.decode(), patched.decode())
    assert b"@app.route('/run-fx-rates', methods=['POST'])\r\n" in patched
    patch_endpoint(spec, service_dir)
    assert path.read_bytes() == patched


def test_aliased_import_still_gets_the_plain_name(service_dir, write_params):
    path = use_file(service_dir, "template")
    path.write_text(
        path.read_text().replace(
            "from flask import Flask, jsonify\n",
            "from flask import Flask, jsonify, request as req\n",
        )
    )
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    assert "from flask import Flask, jsonify, request as req, request\n" in path.read_text()
    with localserve.serving(service_dir) as base:
        answer = requests.post(f"{base}/run-fx-rates", json={"dry_run": True}, timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "config",
    [
        # The project opslib ships in: a plugin's option the container lacks, warnings as errors.
        ("pyproject.toml", '[tool.pytest.ini_options]\ntimeout = 3\nfilterwarnings = ["error"]\n'),
        # A team's own: options of plugins that are not installed at all.
        ("pytest.ini", "[pytest]\naddopts = --cov=app -n 4\n"),
    ],
)
def test_job_test_ignores_the_surrounding_projects_pytest_config(tmp_path, write_params, config):
    from conftest import copy_service
    from opslib.steps.endpoint.check import unit_test

    name, text = config
    project = tmp_path / "project"
    service_dir = copy_service(project / "service")
    (project / name).write_text(text)
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    assert "1 passed" in unit_test(spec, service_dir)


def test_job_test_result_has_no_colour_codes_even_when_colour_is_forced(
    tmp_path, write_params, monkeypatch
):
    """A kernel or CI may force colours; the notebook and `make demo` would show them as text."""
    from conftest import copy_service
    from opslib.steps.endpoint.check import unit_test

    monkeypatch.setenv("PY_COLORS", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    service_dir = copy_service(tmp_path / "project" / "service")
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    result = unit_test(spec, service_dir)
    assert "1 passed" in result and "\x1b[" not in result, repr(result)
