"""The endpoint checklist finds what the seed warns about, on hand-written routes too."""

from __future__ import annotations

import shutil
import subprocess

from conftest import DATA, tool
from opslib.spec.loader import load_spec
from opslib.steps.endpoint.lint import lint
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold

JOBS = {
    "eager.py": "def run_eager(**kw):\n    return {'processed': 1, 'errors': 0}\n",
    "raw.py": "def raw(data):\n    result = {'processed': 1, 'errors': 0}\n    return result\n",
    "nocounts.py": "def nocounts(**kw):\n    return {'status': 'done', 'count': 42}\n",
    "dictcall.py": "def dictcall(**kw):\n    return dict(processed=1, errors=0)\n",
    "eagerjob.py": "def eagerjob(**kw):\n    return {'processed': 1, 'errors': 0}\n",
}


def bad_service(service_dir):
    shutil.copy(DATA / "endpoints" / "lint_bad.py", service_dir / "batch_endpoint.py")
    for name, text in JOBS.items():
        (service_dir / "scripts" / "batch" / name).write_text(text)
    return service_dir


def test_findings_on_hand_written_routes(service_dir):
    findings = lint(bad_service(service_dir))
    got = {(row.route, row.check) for row in findings.itertuples()}
    assert got == {
        ("/run-eager", "import inside the route"),
        ("/run-raw", "empty body"),
        ("/run-nofallback", "empty body"),
        ("/run-nocounts", "result counts"),
        ("/run-unlisted", "registered in index()"),
        ("/run-missing", "registered in index()"),
        ("/run-missing", "empty body"),
        ("/run-missing", "result counts"),
        ("/run-flaskjson", "empty body"),
        ("/run-aliasjson", "empty body"),
        ("/run-eagerjob", "import inside the route"),
    }
    source = (service_dir / "batch_endpoint.py").read_text().splitlines()
    for row in findings.itertuples():
        assert row.fix, row
        line = source[row.line - 1]
        if row.check == "empty body":
            assert "request." in line or "req.json" in line, (row, line)
        if row.check == "import inside the route":
            assert line.startswith("from scripts.batch.eager"), line
    nocounts = findings[findings.route == "/run-nocounts"].iloc[0]
    assert "processed" in nocounts.finding and "errors" in nocounts.finding


def test_template_and_generated_routes_are_clean(service_dir, write_params):
    assert len(lint(service_dir)) == 0
    for overrides in (
        {},
        {"job": {"name": "report", "pattern": "class"}, "schedule": {"body": {}}},
    ):
        spec = load_spec(write_params(**overrides))
        scaffold(spec, service_dir)
        patch_endpoint(spec, service_dir)
    assert len(lint(service_dir)) == 0


def test_cli_check_exit_codes(service_dir):
    clean = subprocess.run(
        [tool("opslib"), "endpoint", "--check", str(service_dir)], capture_output=True, text=True
    )
    assert clean.returncode == 0 and "no findings" in clean.stdout
    dirty = subprocess.run(
        [tool("opslib"), "endpoint", "--check", str(bad_service(service_dir))],
        capture_output=True,
        text=True,
    )
    assert dirty.returncode == 1
    for route in ("/run-raw", "/run-unlisted", "/run-nocounts"):
        assert route in dirty.stdout
