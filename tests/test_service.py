"""The service under a real gunicorn: index, health, job routes, errors and structured logs."""

from __future__ import annotations

import ast
import json
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests

from conftest import seed_service
from opslib.spec.loader import load_spec
from opslib.steps.endpoint import serve as localserve
from opslib.steps.endpoint.lint import lint
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold


@pytest.fixture
def fx_service(service_dir: Path, write_params) -> Path:
    """The service with the example job added through steps 1-2."""
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    return service_dir


@pytest.fixture
def serve(tmp_path: Path):
    """Start a service folder under gunicorn; yields (base URL, a reader of its log lines)."""
    processes = []

    def start(folder: Path):
        log = tmp_path / f"gunicorn-{len(processes)}.log"
        port = localserve.free_port()
        process = localserve.spawn(folder, port, log_path=log)
        processes.append(process)
        localserve.wait_healthy(port, process)
        return f"http://127.0.0.1:{port}", lambda: log.read_text().splitlines()

    yield start
    for process in processes:
        localserve.stop(process)


def json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_index_and_health(serve, fx_service):
    base, _ = serve(fx_service)
    health = requests.get(f"{base}/health", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    index = requests.get(f"{base}/", timeout=5).json()
    assert index["endpoints"] == ["/health", "/run-fx-rates"]


@pytest.mark.parametrize(
    ("kwargs", "dry_run"),
    [
        ({}, False),  # Cloud Scheduler with no body: content-length 0
        ({"data": "not json", "headers": {"Content-Type": "application/json"}}, False),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}}, False),
        ({"json": {"dry_run": True}}, True),
    ],
    ids=["empty", "non-json", "binary", "json"],
)
def test_job_route_accepts_any_body(serve, fx_service, kwargs, dry_run):
    base, logs = serve(fx_service)
    answer = requests.post(f"{base}/run-fx-rates", timeout=10, **kwargs)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "success" and body["error"] is None
    assert body["result"] == {"processed": 0, "errors": 0, "dry_run": dry_run}
    finished = [e for e in json_lines(logs()) if e.get("status") == "success"]
    assert len(finished) == 1
    entry = finished[0]
    assert entry["severity"] == "INFO" and entry["job"] == "fx-rates"
    assert entry["processed"] == 0 and entry["errors"] == 0
    assert isinstance(entry["duration_ms"], int) and len(entry["run_id"]) == 16


def test_failing_job_answers_500_and_logs_error(serve, fx_service):
    module = fx_service / "scripts" / "batch" / "fx_rates.py"
    module.write_text(
        module.read_text().replace(
            "    processed, errors = 0, 0\n",
            "    processed, errors = 0, 0\n    raise RuntimeError('upstream said no')\n",
        )
    )
    base, logs = serve(fx_service)
    answer = requests.post(f"{base}/run-fx-rates", timeout=10)
    assert answer.status_code == 500
    body = answer.json()
    assert body["status"] == "error" and body["result"] is None
    assert body["error"] == "RuntimeError: upstream said no"
    errors = [e for e in json_lines(logs()) if e["severity"] == "ERROR"]
    assert len(errors) == 1
    error = errors[0]
    assert error["job"] == "fx-rates" and error["errors"] == 1 and error["status"] == "error"
    assert "upstream said no" in error["message"] and "Traceback" in error["message"]
    # The run id ties the error to the run's earlier lines.
    started = [e for e in json_lines(logs()) if "started" in e["message"]]
    assert {e["run_id"] for e in started} == {error["run_id"]}


def test_app_log_lines_are_one_json_object_each(serve, fx_service):
    base, logs = serve(fx_service)
    requests.post(f"{base}/run-fx-rates", json={}, timeout=10)
    requests.post(f"{base}/run-fx-rates", json={}, timeout=10)
    entries = [e for e in json_lines(logs()) if e.get("job")]
    assert len(entries) >= 6
    for entry in entries:
        assert entry["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        assert isinstance(entry["message"], str) and entry["time"].endswith("Z")
        assert entry["logging.googleapis.com/sourceLocation"]["file"]
    assert len({e["run_id"] for e in entries}) == 2


def test_job_route_rejects_other_methods(serve, fx_service):
    base, _ = serve(fx_service)
    assert requests.get(f"{base}/run-fx-rates", timeout=5).status_code == 405


def test_container_contract():
    seed = seed_service()
    cmd = next(
        line for line in (seed / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    )
    argv = json.loads(cmd[len("CMD") :])  # exec form is a JSON array
    assert argv[0] == "gunicorn" and "batch_endpoint:app" in argv
    config = runpy.run_path(str(seed / "gunicorn.conf.py"), init_globals={})
    assert config["bind"] == "0.0.0.0:8080"
    import os

    os.environ["PORT"] = "9123"
    try:
        assert runpy.run_path(str(seed / "gunicorn.conf.py"))["bind"] == "0.0.0.0:9123"
    finally:
        del os.environ["PORT"]
    assert config["timeout"] == 0, "Cloud Run enforces the request timeout, not gunicorn"


def test_service_never_imports_opslib():
    """The seed's code; a job a user wrote into service/ is theirs to keep deployable."""
    for path in seed_service().rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "opslib" for n in names), path


def test_url_building_still_works_with_lazy_builders(fx_service):
    import subprocess
    import sys

    code = (
        "import flask, batch_endpoint as b\n"
        "from scripts.common.routing import LazyBuilderRule\n"
        "assert isinstance(b.app.url_map._rules_by_endpoint['run_fx_rates'][0], LazyBuilderRule)\n"
        "with b.app.test_request_context():\n"
        "    print(flask.url_for('run_fx_rates'), flask.url_for('health', full=1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=fx_service, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/run-fx-rates", "/health?full=1"]


class _Api(BaseHTTPRequestHandler):
    """A stand-in external API: two records at /rates, 404 anywhere else."""

    def do_GET(self):
        found = self.path.split("?")[0] == "/rates"
        body = json.dumps({"rates": {"USD": 1.0, "KRW": 1400.5}} if found else {}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


# Job names that are also names inside the route, the job module or its test:
# (name, pattern, reads an external API).
SHADOWING = [
    ("data", "function", False),
    ("run", "function", False),
    ("job-run", "function", False),
    ("make-response", "function", False),
    ("request", "function", False),
    ("jsonify", "function", False),
    ("log", "function", True),
    ("os", "function", True),
    ("get-json", "function", True),
    ("records", "function", True),
    ("job", "class", False),
    ("run-async", "class", False),
    ("json", "class", True),
]


def test_any_valid_job_name_works(service_dir, write_params, api):
    for name, pattern, reads_api in SHADOWING:
        job = {"name": name, "pattern": pattern}
        if reads_api:
            job["source_url"] = "https://api.example.com/rates"
        spec = load_spec(write_params(name, job=job))
        scaffold(spec, service_dir)
        patch_endpoint(spec, service_dir)
    assert len(lint(service_dir)) == 0, lint(service_dir).to_string()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=service_dir,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    sources = {
        f"{name.replace('-', '_').upper()}_SOURCE_URL": f"{api}/rates" for name, *_ in SHADOWING
    }
    with localserve.serving(service_dir, env=sources) as base:
        for name, _, reads_api in SHADOWING:
            answer = requests.post(f"{base}/run-{name}", json={"dry_run": True}, timeout=10)
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["result"]["processed"] == (2 if reads_api else 0), name


def test_every_line_gunicorn_prints_is_json_and_free_of_query_strings(
    service_dir, write_params, api, tmp_path
):
    spec = load_spec(write_params(job={"source_url": "https://api.example.com/rates"}))
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    log = tmp_path / "gunicorn.log"
    env = {"FX_RATES_SOURCE_URL": f"{api}/missing?api_key=SECRET-KEY"}
    with localserve.serving(service_dir, env=env, log_path=log) as base:
        answer = requests.post(f"{base}/run-fx-rates", timeout=30)
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error.startswith("HTTPError: 404") and "/missing" in error
    assert "SECRET" not in answer.text
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any plain-text line
    messages = [e["message"] for e in entries]
    for expected in ("Starting gunicorn", "Booting worker", "fx-rates failed", "Shutting down"):
        assert any(expected in m for m in messages), (expected, messages)
    assert all(e["severity"] in {"INFO", "WARNING", "ERROR", "CRITICAL"} for e in entries)
    assert "SECRET" not in log.read_text()
