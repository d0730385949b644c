"""opslib doctor against localcloud: each finding from a condition produced for real.

Every scenario deploys a real service (scaffolded job, real gunicorn), schedules its job and
makes it fail the way users' jobs fail: a job that sleeps past the deadline, a service whose
timeout was lowered by hand, a slow cold start with min instances 0, a job calling a local
server that answers 429 (with and without the retry policy), a wrong audience, a missing
invoker role, a revision that cannot start, a job whose route a deploy of its shared service
dropped. The scenarios run concurrently (their waits are
real sleeps) in one module-scoped fixture; each test diagnoses one of them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import lc
import nbformat
import pandas as pd
import pytest
import yaml

from conftest import EXAMPLE, ROOT, copy_service, merge, seed_service, tool
from opslib.cli.main import main
from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.core.errors import OpslibError
from opslib.doctor import diagnose as doctor
from opslib.doctor import explain
from opslib.doctor.timing import needed
from opslib.fleet import steps as fleet_steps
from opslib.fleet.load import Fleet, open_fleet
from opslib.spec import names, pricing
from opslib.spec.loader import load_spec
from opslib.spec.model import Spec
from opslib.steps import schedule as step4
from opslib.steps import secrets
from opslib.steps.deploy import service as step3
from opslib.steps.deploy.desired import ROUTES_ANNOTATION
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.logs import read_logs
from opslib.steps.scaffold import scaffold
from opslib.steps.verify import service as step5

STARTED = datetime.now(UTC) - timedelta(minutes=5)
# Held from scaling to zero until the cold runs are over, so one scenario's scale-to-zero
# cannot turn another's warm run cold.
SCALE_TO_ZERO = threading.Lock()


def new_clients() -> Clients:
    return Clients("local", lc.PROJECT, lc.server().url)


@dataclass
class Scenario:
    """One deployed automation in a known condition, and what producing it returned."""

    spec: Spec
    data: dict
    folder: Path
    extra: dict = field(default_factory=dict)


def make(tmp: Path, name: str, edit: Callable[[Path], None] | None = None, **overrides) -> Scenario:
    """A spec from example.yaml (min instances 1 unless said), and its scaffolded service."""
    data = merge(yaml.safe_load(EXAMPLE.read_text()), overrides)
    data["service"], data["job"]["name"] = lc.unique(name), lc.unique("job")
    data["job"].pop("expected_duration", None)
    spec = Spec.model_validate(data)
    folder = tmp / "service"
    copy_service(folder)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    if edit:
        edit(folder / "scripts" / "batch" / f"{spec.job.module}.py")
    return Scenario(spec, data, folder)


def deploy_and_schedule(s: Scenario, clients: Clients) -> None:
    step3.deploy(s.spec, s.folder, clients, progress=False)
    step4.schedule(s.spec, clients)


def run_job(s: Scenario, clients: Clients, limit: float = 90) -> str:
    """Run the job now and wait for that attempt; returns its rpc code name."""
    name = names.scheduler_job(s.spec)
    before = clients.scheduler.get_job(name=name).last_attempt_time
    clients.scheduler.run_job(name=name)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = clients.scheduler.get_job(name=name)
        if job.last_attempt_time and job.last_attempt_time != before:
            return codes.name(job.status.code)
        time.sleep(0.2)
    raise AssertionError(f"no attempt of {name} within {limit}s")


def wait_for_ends(s: Scenario, clients: Clients, count: int, limit: float = 60) -> None:
    """Wait until `count` runs of the job wrote their end line (success or error)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        frame = read_logs(clients, s.spec, since=STARTED)
        ends = frame[(frame["job"] == s.spec.job.name) & frame["status"].isin(("success", "error"))]
        if len(ends) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{s.spec.job.name}: fewer than {count} end lines after {limit}s")


def _insert(module: Path, after: str, text: str) -> None:
    source = module.read_text()
    assert after in source, module
    module.write_text(source.replace(after, after + text, 1))


def sleep_in_run(seconds: float) -> Callable[[Path], None]:
    """The job takes `seconds` to run."""

    def edit(module: Path) -> None:
        _insert(module, "import logging\n", "import time\n")
        _insert(module, "    processed, errors = 0, 0\n", f"    time.sleep({seconds})\n")

    return edit


def sleep_on_import(seconds: float) -> Callable[[Path], None]:
    """The job's module takes `seconds` to import: a new instance's first run pays it."""

    def edit(module: Path) -> None:
        _insert(module, "import logging\n", f"import time\n\ntime.sleep({seconds})\n")

    return edit


def without_policy(module: Path) -> None:
    """The call goes straight through requests, around scripts.common.http."""
    source = module.read_text().replace(
        "    data = _get_json(SOURCE_URL)\n",
        "    _resp = requests.get(SOURCE_URL, timeout=10)\n"
        "    _resp.raise_for_status()\n"
        "    data = _resp.json()\n",
    )
    module.write_text(source.replace("import os\n", "import os\n\nimport requests\n", 1))


class _TooMany(BaseHTTPRequestHandler):
    """An external API that rate-limits every call."""

    def do_GET(self) -> None:
        body = b'{"error": "rate limit exceeded"}'
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


# --- the scenarios: each produces its condition on localcloud ---------------------------------


def healthy(tmp: Path) -> Scenario:
    s = make(tmp, "doc-ok")
    clients = new_clients()
    deploy_and_schedule(s, clients)
    s.extra["codes"] = [run_job(s, clients), run_job(s, clients)]
    wait_for_ends(s, clients, 2)
    return s


def scheduler_deadline(tmp: Path) -> Scenario:
    """The job sleeps 17s; Scheduler gives up at 15s. Run through verify, which must fail."""
    s = make(tmp, "doc-dl", sleep_in_run(17), schedule={"attempt_deadline": "15s"})
    clients = new_clients()
    deploy_and_schedule(s, clients)
    s.extra["verdict"] = explain.verify(lc.session(s.spec, s.folder), progress=False)
    wait_for_ends(s, clients, 1)
    return s


def run_timeout(tmp: Path) -> Scenario:
    """Someone lowered the live service's timeout to 5s; the job needs 7s: Cloud Run's 504."""
    s = make(tmp, "doc-504", sleep_in_run(7), schedule={"attempt_deadline": "15s"})
    clients = new_clients()
    deploy_and_schedule(s, clients)
    service = clients.run.get_service(name=names.service(s.spec))
    service.template.timeout = timedelta(seconds=5)  # gcloud run services update --timeout=5
    clients.run.update_service(service=service).result(timeout=120)
    s.extra["code"] = run_job(s, clients)
    wait_for_ends(s, clients, 1)
    return s


def cold_start(tmp: Path) -> Scenario:
    """Min instances 0 and a 16s start: the cold run misses the 15s deadline, the warm one not."""
    s = make(
        tmp,
        "doc-cold",
        sleep_on_import(16),
        schedule={"attempt_deadline": "15s"},
        deploy={"min_instances": 0},
    )
    clients = new_clients()
    deploy_and_schedule(s, clients)
    with SCALE_TO_ZERO:
        lc.call("/_localcloud/instances:scaleToZero", {})  # idle, as after 15 quiet minutes
        s.extra["codes"] = [run_job(s, clients)]
        wait_for_ends(s, clients, 1)
        s.extra["codes"].append(run_job(s, clients))
    return s


def unstartable(tmp: Path) -> Scenario:
    """The mounted secret's version was disabled: the next new instance cannot start."""
    secret = lc.unique("api-key")
    s = make(tmp, "doc-503", deploy={"min_instances": 0}, secrets={"API_KEY": f"{secret}:latest"})
    clients = new_clients()
    secrets.ensure_secret(clients, lc.PROJECT, secret)
    secrets.add_version(clients, lc.PROJECT, secret, "s3cr3t")
    deploy_and_schedule(s, clients)
    name = f"{secrets.secret_name(lc.PROJECT, secret)}/versions/1"
    clients.secrets.disable_secret_version(name=name)  # gcloud secrets versions disable 1
    with SCALE_TO_ZERO:
        lc.call("/_localcloud/instances:scaleToZero", {})
        s.extra["code"] = run_job(s, clients)
    return s


def rate_limited(tmp: Path, policy: bool) -> Scenario:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TooMany)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/rates"
    edit = None if policy else without_policy
    s = make(tmp, "doc-429" if policy else "doc-raw", edit, job={"source_url": url})
    clients = new_clients()
    try:
        deploy_and_schedule(s, clients)
        s.extra["code"] = run_job(s, clients)
        wait_for_ends(s, clients, 1)
    finally:
        server.shutdown()
        server.server_close()
    s.extra["host"] = f"127.0.0.1:{server.server_port}"
    return s


def wrong_audience(tmp: Path) -> Scenario:
    s = make(tmp, "doc-aud", schedule={"audience": "https://wrong.example"})
    clients = new_clients()
    deploy_and_schedule(s, clients)
    s.extra["code"] = run_job(s, clients)
    return s


def missing_invoker(tmp: Path) -> Scenario:
    """The invoker binding was removed (gcloud run services remove-iam-policy-binding)."""
    s = make(tmp, "doc-iam")
    clients = new_clients()
    deploy_and_schedule(s, clients)
    name = names.service(s.spec)
    policy = clients.run.get_iam_policy(request={"resource": name})
    del policy.bindings[:]
    clients.run.set_iam_policy(request={"resource": name, "policy": policy})
    s.extra["code"] = run_job(s, clients)
    return s


def broken_revision(tmp: Path) -> Scenario:
    """The app raises at import. gunicorn --preload imports it before listening, so the start
    fails however slowly a loaded machine imports it (without it, gunicorn's master listens
    first and the worker's crash can come after the rollout's watch)."""
    s = make(tmp, "doc-rev", deploy={"env": {"GUNICORN_CMD_ARGS": "--preload"}})
    clients = new_clients()
    deploy_and_schedule(s, clients)
    endpoint = s.folder / "batch_endpoint.py"
    endpoint.write_text(endpoint.read_text() + "\nraise RuntimeError('boom at import')\n")
    with pytest.raises(OpslibError):
        step3.deploy(s.spec, s.folder, clients, progress=False)
    return s


def fleet_project(tmp: Path) -> tuple[Path, list[Path]]:
    """A project (its own service/, parameters/) with jobs A and B on one new service."""
    project = tmp / "project"
    copy_service(project / "service")
    (project / "parameters").mkdir()
    service, files = lc.unique("doc-route"), []
    for _ in range(2):
        data = yaml.safe_load(EXAMPLE.read_text())
        data["service"], data["job"]["name"] = service, lc.unique("job")
        path = project / "parameters" / f"{data['job']['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        files.append(path)
    return project, files


def on_localcloud(files: list[Path]) -> Fleet:
    """The automations in `files`, talking to the tests' localcloud."""
    fleet = open_fleet(files, target="local")
    clients = new_clients()
    for session in fleet.sessions:
        session._clients = clients
    return fleet


def steps_1_to_3(files: list[Path]) -> None:
    """What `opslib run FILES --steps 1-3` does: every job into its folder, one deploy."""
    fleet = on_localcloud(files)
    fleet_steps.write_functions(fleet)
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)


def serving_revision(spec: Spec, clients: Clients) -> str:
    service = clients.run.get_service(name=names.service(spec))
    return service.latest_ready_revision.rsplit("/", 1)[-1]


def route_lost(tmp: Path) -> Scenario:
    """A and B share a service; B was then deployed from a per-job copy (service/ plus B only),
    as before this release. A's job is created after that deploy (step 4 checks the service
    exists, not the route), so the deploy's preflight had no caller of A's route to protect."""
    project, (a, b) = fleet_project(tmp)
    steps_1_to_3([a, b])
    spec_a, spec_b = load_spec(a), load_spec(b)
    clients = new_clients()
    had = serving_revision(spec_a, clients)
    step4.schedule(spec_b, clients)
    copy = tmp / "copy"
    copy_service(copy)
    scaffold(spec_b, copy)
    patch_endpoint(spec_b, copy)
    step3.deploy(spec_b, copy, clients, progress=False)
    step4.schedule(spec_a, clients)
    verdict = explain.verify(lc.session(spec_a, project / "service", a), progress=False)
    extra = {"files": [a, b], "more": [spec_b], "had": had, "verdict": verdict}
    extra["serving"] = serving_revision(spec_a, clients)
    return Scenario(spec_a, yaml.safe_load(a.read_text()), project / "service", extra)


def route_never(tmp: Path, annotated: bool = True) -> Scenario:
    """Only B was ever written into the shared folder and deployed; A's job calls its route.
    Not `annotated`: someone updated the service by hand since, so the serving revision does
    not record its routes."""
    project, (a, b) = fleet_project(tmp)
    steps_1_to_3([b])
    spec_a, spec_b = load_spec(a), load_spec(b)
    clients = new_clients()
    if not annotated:
        service = clients.run.get_service(name=names.service(spec_b))
        del service.template.annotations[ROUTES_ANNOTATION]
        clients.run.update_service(service=service).result(timeout=120)
    step4.schedule(spec_b, clients)
    step4.schedule(spec_a, clients)
    s = Scenario(spec_a, yaml.safe_load(a.read_text()), project / "service")
    s.extra.update(files=[a, b], more=[spec_b], project=project, code=run_job(s, clients))
    s.extra["serving"] = serving_revision(spec_a, clients)
    return s


SCENARIOS: dict[str, Callable[[Path], Scenario]] = {
    "healthy": healthy,
    "deadline": scheduler_deadline,
    "timeout": run_timeout,
    "cold": cold_start,
    "429": lambda tmp: rate_limited(tmp, policy=True),
    "429-raw": lambda tmp: rate_limited(tmp, policy=False),
    "audience": wrong_audience,
    "invoker": missing_invoker,
    "revision": broken_revision,
    "503": unstartable,
    "route-lost": route_lost,
    "route-never": route_never,
    "route-unknown": lambda tmp: route_never(tmp, annotated=False),
}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory):
    """All scenarios, started at once; a test waits for the one it diagnoses."""
    pool = ThreadPoolExecutor(max_workers=len(SCENARIOS))
    futures: dict[str, Future[Scenario]] = {
        name: pool.submit(fn, tmp_path_factory.mktemp(name.replace("-", "")))
        for name, fn in SCENARIOS.items()
    }
    yield futures
    pool.shutdown(wait=True)
    clients = new_clients()
    for future in futures.values():
        if future.exception() is None:
            s = future.result()
            for spec in [s.spec, *s.extra.get("more", [])]:
                step4.delete(spec, clients)
            clients.run.delete_service(name=names.service(s.spec)).result(timeout=60)


def diagnose(s: Scenario, params: Path | None = None) -> pd.DataFrame:
    return doctor.diagnose(lc.session(s.spec, s.folder, params), since=timedelta(hours=1))


def rows(findings: pd.DataFrame, check: str, severity: str | None = None) -> pd.DataFrame:
    mine = findings[findings["check"] == check]
    return mine[mine["severity"] == severity] if severity else mine


def one(findings: pd.DataFrame, check: str, severity: str) -> pd.Series:
    found = rows(findings, check, severity)
    assert len(found) >= 1, findings.to_string()
    return found.iloc[0]


# --- the tests -------------------------------------------------------------------------------


def test_nothing_wrong_says_so_with_what_it_checked(scenarios):
    s = scenarios["healthy"].result()
    assert s.extra["codes"] == ["OK", "OK"]
    findings = diagnose(s)
    assert doctor.problems(findings).empty, findings.to_string()
    assert set(findings["check"]) == {
        "service",
        "revision",
        "route",
        "scheduler job",
        "auth",
        "deadline",
        "deadline chain",
        "cold start",
        "rate limit (429)",
        "job errors",
        "overlap",
    }
    text = doctor.render(findings)
    assert text.startswith("nothing is wrong") and "checked and fine" in text
    cold = one(findings, "cold start", "ok")
    assert "min instances 1" in cold["finding"] and "/month" in cold["evidence"]
    assert "2 run(s)" in one(findings, "job errors", "ok")["finding"]


def test_paused_job_is_a_warning_with_the_resume_command(scenarios):
    s = scenarios["healthy"].result()
    clients = new_clients()
    step4.pause(s.spec, clients)
    try:
        findings = diagnose(s)
    finally:
        step4.resume(s.spec, clients)
    paused = one(findings, "scheduler job", "warning")
    assert "PAUSED" in paused["finding"] and "opslib schedule PARAMS resume" in paused["fix"]
    assert not doctor.has_errors(findings)


def test_job_outliving_the_attempt_deadline(scenarios):
    s = scenarios["deadline"].result()
    verdict = s.extra["verdict"]
    assert not verdict.passed and verdict.attempt == "DEADLINE_EXCEEDED"
    at_failure = one(verdict.findings, "deadline", "error")  # verify's own diagnosis
    assert "DEADLINE_EXCEEDED" in at_failure["evidence"]
    findings = diagnose(s)
    deadline = one(findings, "deadline", "error")
    assert "Scheduler (DEADLINE_EXCEEDED)" in deadline["finding"]
    assert "1 run(s) took longer than that: up to 17" in deadline["evidence"]
    assert "set schedule.attempt_deadline: 30s" in deadline["fix"]
    chain = one(findings, "deadline chain", "error")
    assert "p95" in chain["finding"] and "schedule.attempt_deadline: 30s" in chain["fix"]
    failing = one(findings, "scheduler job", "error")
    assert "DEADLINE_EXCEEDED x1" in failing["evidence"] and "deadline" in failing["fix"]


def test_cloud_run_timeout_below_the_deadline_gives_504(scenarios):
    s = scenarios["timeout"].result()
    assert s.extra["code"] == "DEADLINE_EXCEEDED"  # Scheduler's code for Cloud Run's 504
    findings = diagnose(s)
    deadline = one(findings, "deadline", "error")
    assert "504" in deadline["finding"]
    assert "got 504 from Cloud Run after 5" in deadline["evidence"]
    assert "maximum request timeout" in deadline["evidence"]
    chain = one(findings, "deadline chain", "error")
    assert "cuts requests at 5s" in chain["finding"]
    assert "the spec already has deploy.timeout: 900s but the live one is 5s" in chain["fix"]
    assert "opslib deploy PARAMS" in chain["fix"]


def test_cold_start_failure_with_min_instances_0_and_its_cost(scenarios):
    s = scenarios["cold"].result()
    assert s.extra["codes"] == ["DEADLINE_EXCEEDED", "OK"]
    findings = diagnose(s)
    cold = one(findings, "cold start", "error")
    assert "1 cold start(s) failed" in cold["finding"]
    assert "live min instances 0" in cold["evidence"]
    assert "attempt DEADLINE_EXCEEDED" in cold["evidence"]
    cost = pricing.min_instance_cost(Decimal(2), 2 * 1024**3, "asia-northeast3")
    assert cost.explain() in cold["evidence"]
    assert (
        pricing.READ_ON in cold["evidence"] and "cloud.google.com/run/pricing" in cold["evidence"]
    )
    assert "set deploy.min_instances: 1" in cold["fix"] and "$36.29/month" in cold["fix"]
    deadline = one(findings, "deadline", "warning")  # the last attempt, warm, succeeded
    assert "hit a cold start" in deadline["evidence"]
    assert deadline["fix"].startswith("set deploy.min_instances: 1")


def test_429_with_the_retry_policy(scenarios):
    s = scenarios["429"].result()
    assert s.extra["code"] == "INTERNAL"
    findings = diagnose(s)
    limited = one(findings, "rate limit (429)", "error")
    assert (
        s.extra["host"] in limited["finding"]
        and "retries did not get through" in limited["finding"]
    )
    assert "2 retry line(s) from the policy" in limited["evidence"]
    assert "time.sleep" in limited["fix"] and "another API" in limited["fix"]
    errors = one(findings, "job errors", "error")
    assert "429" in errors["evidence"] and errors["fix"].startswith("see [rate limit (429)]")


def test_429_without_the_retry_policy_names_the_call(scenarios):
    s = scenarios["429-raw"].result()
    assert s.extra["code"] == "INTERNAL"
    findings = diagnose(s)
    limited = one(findings, "rate limit (429)", "error")
    assert "bypass the retry policy" in limited["finding"]
    assert "0 retry line(s)" in limited["evidence"]
    assert "requests.get() on line" in limited["evidence"]
    assert "from scripts.common.http import get_json" in limited["fix"]


def test_wrong_audience(scenarios):
    s = scenarios["audience"].result()
    assert s.extra["code"] == "UNAUTHENTICATED"
    findings = diagnose(s)
    auth = one(findings, "auth", "error")
    assert "audience" in auth["finding"] and "401" in auth["finding"]
    assert "'https://wrong.example'" in auth["evidence"]
    assert "1 attempt(s) ended UNAUTHENTICATED" in auth["evidence"]
    uri = new_clients().run.get_service(name=names.service(s.spec)).uri
    assert f"schedule.audience: {uri}" in auth["fix"]


def test_missing_invoker_role(scenarios):
    s = scenarios["invoker"].result()
    assert s.extra["code"] == "PERMISSION_DENIED"
    findings = diagnose(s)
    auth = one(findings, "auth", "error")
    assert "lacks roles/run.invoker" in auth["finding"]
    assert "PERMISSION_DENIED" in auth["evidence"] and "403" in auth["evidence"]
    assert "opslib deploy PARAMS" in auth["fix"]


def test_revision_that_failed_to_start(scenarios):
    s = scenarios["revision"].result()
    findings = diagnose(s)
    revision = one(findings, "revision", "error")
    assert "failed to start" in revision["finding"]
    assert "listen on the port" in revision["evidence"] and "boom at import" in revision["evidence"]
    assert "traffic stays on" in revision["evidence"]
    ready = one(findings, "service", "ok")  # the old revision still serves
    assert "100%" in ready["evidence"]


def test_instance_that_cannot_start_on_a_cold_start(scenarios):
    s = scenarios["503"].result()
    assert s.extra["code"] == "UNAVAILABLE"
    findings = diagnose(s)
    unstarted = one(findings, "revision", "error")
    assert "got 503: a new instance failed to start" in unstarted["finding"]
    assert "SECRETS_ACCESS_CHECK_FAILED" in unstarted["evidence"]
    assert "opslib secrets check PARAMS" in unstarted["fix"]
    assert "revision" in one(findings, "scheduler job", "error")["fix"]


def test_work_over_30_minutes_must_be_split(scenarios):
    """A 45-minute route job cannot run inside one attempt. No test waits 45 minutes, so the
    work's length is the spec's expected_duration with runtime: service (which load_spec
    refuses; an API caller may not; unset, the runtime would be a Cloud Run job)."""
    s = scenarios["healthy"].result()
    route = {"expected_duration": "45m", "runtime": "service"}
    long = Spec.model_validate(merge(s.data, {"job": route}))
    findings = doctor.diagnose(lc.session(long, seed_service()), since=timedelta(hours=1))
    split = one(findings, "deadline chain", "error")
    assert "over 30 minutes" in split["finding"] and "Cloud Run job" in split["fix"]
    assert needed(17) == 30 and needed(1000) == 1500 and needed(5) == 15


def test_min_instance_prices_state_their_figures():
    seoul = pricing.min_instance_cost(Decimal(2), 2 * 1024**3, "asia-northeast3")
    assert seoul.tier == 2 and seoul.monthly == Decimal("36.288")
    iowa = pricing.min_instance_cost(Decimal(1), 512 * 1024**2, "us-central1", count=2)
    assert iowa.monthly == Decimal("2") * (Decimal("0.0000025") * Decimal("1.5")) * 2592000
    assert "Tier 1 assumed" in pricing.min_instance_cost(Decimal(1), 1024**3, "me-west1").explain()


def test_doctor_command_exit_codes(scenarios, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)

    def opslib(s: Scenario, *args: str) -> tuple[int, str, str]:
        params = tmp_path / f"{s.spec.service}.yaml"
        params.write_text(yaml.safe_dump(s.data))
        code = main(["doctor", str(params), "--since", "1h", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = opslib(scenarios["healthy"].result(), "--queries")
    assert code == 0 and out.startswith("nothing is wrong"), out
    assert "gcloud logging read" in out and "gcloud scheduler jobs describe" in out
    code, out, _ = opslib(scenarios["audience"].result())
    assert code == 1 and "ERROR   [auth]" in out and "fix:" in out
    code, _, err = opslib(scenarios["healthy"].result(), "--since", "yesterday")
    assert code == 2 and "not a duration" in err


def test_troubleshoot_notebook_shows_the_findings(scenarios, tmp_path):
    s = scenarios["audience"].result()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(s.data))
    out = tmp_path / "07.ipynb"
    command = [tool("papermill"), str(ROOT / "notebooks" / "07_troubleshoot.ipynb"), str(out)]
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    result = subprocess.run(
        [*command, "--no-progress-bar", "-k", "python3", "-p", "params", str(params)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shown = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for cell in nbformat.read(out, as_version=4).cells
        for o in cell.get("outputs", [])
    )
    assert "ERROR   [auth]" in shown and "gcloud logging read" in shown


def test_a_window_with_more_logs_than_the_read_limit_says_what_it_covered():
    """A chatty service: over LOG_LIMIT entries in the window; the doctor names what it read."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"], data["job"]["name"] = lc.unique("doc-chatty"), lc.unique("job")
    spec = Spec.model_validate(data)
    resource = {
        "type": "cloud_run_revision",
        "labels": {"service_name": spec.service, "location": spec.region},
    }
    log_name = f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Fstdout"
    for batch in range(4):
        entries = [
            {"textPayload": f"line {batch}-{i}", "resource": resource, "logName": log_name}
            for i in range(800)
        ]
        status, body = lc.call("/v2/entries:write", {"entries": entries})
        assert status == 200, body
    findings = doctor.diagnose(lc.session(spec, seed_service()), since=timedelta(hours=1))
    row = one(findings, "logs", "warning")
    assert f"newest {doctor.LOG_LIMIT}" in row["finding"] and "--since" in row["fix"]
    quiet = Spec.model_validate({**data, "service": lc.unique("doc-quiet")})
    quiet_findings = doctor.diagnose(lc.session(quiet, seed_service()), since=timedelta(hours=1))
    assert rows(quiet_findings, "logs").empty


# --- a route dropped by a deploy of the shared service ------------------------------------------


def redeploy_all(s: Scenario) -> str:
    """The command the route finding must give: every job of the service, this one first."""
    a, b = (f"parameters/{p.name}" for p in s.extra["files"])
    return f"opslib run {a} {b} --steps 1-3"


def test_not_found_hint_names_the_cause_not_steps_2_3():
    hint = step5.HINTS["NOT_FOUND"]
    assert "steps 2-3" not in hint
    assert "missing on the serving revision" in hint and "--steps 1-3" in hint
    assert "[route]" in hint


def test_a_route_dropped_by_another_jobs_deploy_is_its_own_finding(scenarios):
    s = scenarios["route-lost"].result()
    route, other = s.spec.job.route, s.extra["more"][0].job.route
    verdict = s.extra["verdict"]
    assert not verdict.passed and verdict.attempt == "NOT_FOUND"
    attempt = verdict.checks.set_index("check").loc["scheduler attempt", "value"]
    assert f"route {route} is missing on the serving revision" in attempt
    assert "--steps 1-3" in attempt and "steps 2-3" not in attempt
    assert len(rows(verdict.findings, "route", "error")) == 1  # verify's own diagnosis

    findings = diagnose(s, params=s.extra["files"][0])
    assert findings.iloc[0]["check"] == "route", findings.to_string()  # the cause comes first
    missing = one(findings, "route", "error")
    assert missing["finding"] == (
        f"route {route} is missing on the serving revision {s.extra['serving']}: "
        f"scheduler job {s.spec.job.name} gets 404 (NOT_FOUND)"
    )
    evidence = missing["evidence"]
    assert f"{s.extra['serving']} (100% of traffic) serves /, /health, {other}" in evidence
    assert f"the newest revision that served {route}: {s.extra['had']} (created " in evidence
    assert "1 attempt(s) ended NOT_FOUND" in evidence
    assert f"request(s) to {route} got 404" in evidence
    assert redeploy_all(s) in missing["fix"]
    assert "from its folder service/" in missing["fix"]
    failing = one(findings, "scheduler job", "error")
    assert "NOT_FOUND x1" in failing["evidence"]
    assert failing["fix"].startswith(f"see [route] (route {route} is missing on the serving")


def test_a_route_never_deployed_says_none_and_its_fix_works(scenarios, monkeypatch):
    s = scenarios["route-never"].result()
    assert s.extra["code"] == "NOT_FOUND"
    monkeypatch.chdir(s.extra["project"])  # no params given: the doctor finds the job's file
    findings = diagnose(s)
    missing = one(findings, "route", "error")
    never = f"served {s.spec.job.route}: none (no revision of {s.spec.service} had it)"
    assert never in missing["evidence"]
    assert redeploy_all(s) in missing["fix"] and "service/" in missing["fix"]
    printed = shlex.split(redeploy_all(s))  # the fix, run as printed, from the project root
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    done = subprocess.run(
        [tool("opslib"), *printed[1:]], cwd=s.extra["project"], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    between = diagnose(s, params=s.extra["files"][0])  # deployed, not run since
    since = one(between, "route", "warning")
    assert "now, but the job's last attempt got 404" in since["finding"]
    assert "deployed after that attempt" in since["fix"] and "opslib verify" in since["fix"]
    assert one(between, "scheduler job", "error")["fix"].startswith("see [route] (route ")
    assert run_job(s, new_clients()) == "OK"
    after = diagnose(s, params=s.extra["files"][0])
    assert rows(after, "route", "error").empty and rows(after, "scheduler job", "error").empty
    assert f"route {s.spec.job.route} is served by" in one(after, "route", "ok")["finding"]


def test_a_revision_without_recorded_routes_falls_back_to_the_404s(scenarios):
    s = scenarios["route-unknown"].result()
    assert s.extra["code"] == "NOT_FOUND"
    findings = diagnose(s, params=s.extra["files"][0])
    missing = one(findings, "route", "error")
    assert missing["finding"] == (
        f"route {s.spec.job.route} answers 404 on the serving revision {s.extra['serving']}"
    )
    assert f"the routes {s.extra['serving']} serves are unknown" in missing["evidence"]
    assert "1 attempt(s) ended NOT_FOUND" in missing["evidence"]
    assert f"request(s) to {s.spec.job.route} got 404" in missing["evidence"]
    assert redeploy_all(s) in missing["fix"]


def test_no_fix_points_at_its_own_finding(scenarios):
    """A symptom's fix points at its cause; never at itself, never at a finding not raised."""
    for name, future in scenarios.items():
        findings = diagnose(future.result())
        raised = set(doctor.problems(findings)["check"])
        for row in findings.itertuples():
            own = re.escape(row.check)
            itself = rf"\[{own}\]|\bsee (the )?(finding\(s\) of )?{own}\b"
            assert not re.search(itself, row.fix), (name, row.check, row.fix)
            for pointed in re.findall(r"\[([^\]]+)\]", row.fix):
                assert pointed in raised, (name, row.check, row.fix)


def test_skipped_and_overlapping_runs_are_reported():
    """The overlap guard's own log lines (lease.py): skips are info, overlaps a warning."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"], data["job"]["name"] = lc.unique("doc-overlap"), lc.unique("job")
    spec = Spec.model_validate(data)
    resource = {
        "type": "cloud_run_revision",
        "labels": {"service_name": spec.service, "location": spec.region},
    }
    log_name = f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Fstdout"
    payloads = [
        {"message": "skipped: held by run a1", "status": "skipped"},
        {"message": "skipped: held by run a1", "status": "skipped"},
        {"message": "took over the lease of run a1, expired", "status": "took_over"},
    ]
    entries = [
        {
            "jsonPayload": {"job": spec.job.name, "run_id": f"r{i}", **p},
            "resource": resource,
            "logName": log_name,
            "severity": "WARNING" if p["status"] == "took_over" else "INFO",
        }
        for i, p in enumerate(payloads)
    ]
    status, body = lc.call("/v2/entries:write", {"entries": entries})
    assert status == 200, body
    findings = doctor.diagnose(lc.session(spec, seed_service()), since=timedelta(hours=1))
    skipped = one(findings, "overlap", "info")
    assert "2 run(s)" in skipped["finding"] and "job.overlap: queue" in skipped["fix"]
    overlapped = one(findings, "overlap", "warning")
    assert "1 run(s)" in overlapped["finding"] and "took over" in overlapped["evidence"]
    quiet = Spec.model_validate({**data, "service": lc.unique("doc-calm")})
    calm_findings = doctor.diagnose(lc.session(quiet, seed_service()), since=timedelta(hours=1))
    calm = rows(calm_findings, "overlap")
    assert list(calm["severity"]) == ["ok"]
