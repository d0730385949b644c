"""Alerts end to end on localcloud: a real deployed job fails or overruns, Cloud Monitoring's
log-match policy (applied by step `alerts` through the official client) opens an incident, and
a real webhook receiver on 127.0.0.1 gets Google's webhook JSON once; e-mail lands in the
outbox. Plus the spec's checks, the plan's idempotence and removal."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import lc
import nbformat
import pytest
import yaml

from conftest import EXAMPLE, ROOT, copy_service, tool
from opslib.cloud.clients import Clients
from opslib.core.errors import SpecError
from opslib.spec.loader import load_spec
from opslib.spec.model import Spec
from opslib.steps import alerts as step
from opslib.steps import schedule as step4
from opslib.steps.deploy import service as step3
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold

DOCTOR = "opslib doctor parameters/alerting.yaml"
SECRET_VALUE = "s3cr3t-api-key-value"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every POST it gets."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.posts.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/tok-{lc.unique('t')}"

    def wait(self, count: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return [body for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def clients() -> Clients:
    return Clients("local", lc.PROJECT, lc.server().url)


def webhook_secret(clients: Clients, url: str) -> str:
    secret_id = lc.unique("hook")
    clients.secrets.create_secret(
        parent=f"projects/{lc.PROJECT}",
        secret_id=secret_id,
        secret={"replication": {"automatic": {}}},
    )
    clients.secrets.add_secret_version(
        parent=f"projects/{lc.PROJECT}/secrets/{secret_id}", payload={"data": url.encode()}
    )
    return secret_id


def make_spec(secret_id: str, api_key: str | None = None, **schedule) -> Spec:
    data = yaml.safe_load(EXAMPLE.read_text())
    if api_key:
        data["secrets"] = {"API_KEY": f"{api_key}:latest"}
    data["service"] = lc.unique("alr")
    data["job"]["name"] = lc.unique("job")
    data["job"].pop("expected_duration", None)
    data["deploy"]["min_instances"] = 0
    data["schedule"].update(schedule)
    data["alerts"] = {"channels": [{"webhook": secret_id}, {"email": "ops@example.com"}]}
    return Spec.model_validate(data)


def deploy(tmp: Path, spec: Spec, clients: Clients, line: str) -> None:
    """Steps 1-4 with `line` added at the top of the job's work; the job left paused."""
    folder = tmp / "service"
    copy_service(folder)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    module = folder / "scripts" / "batch" / f"{spec.job.module}.py"
    text = module.read_text().replace("import logging\n", "import logging\nimport time\n", 1)
    anchor = "    processed, errors = 0, 0\n"
    module.write_text(text.replace(anchor, f"{anchor}    {line}\n", 1))
    step3.deploy(spec, folder, clients, progress=False)
    step4.schedule(spec, clients)
    step4.pause(spec, clients)


def outbox() -> list[dict]:
    path = lc._SERVER["state"] / "outbox.jsonl"  # type: ignore[operator]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failing_run_notifies_once_naming_job_run_error_and_doctor(tmp_path, clients, receiver):
    api_key = webhook_secret(clients, SECRET_VALUE)  # a secret the job runs with
    spec = make_spec(webhook_secret(clients, receiver.url), api_key)
    deploy(tmp_path, spec, clients, "raise RuntimeError('rates API said no')")
    plan = step.apply(spec, clients, DOCTOR)
    assert sorted(plan.to_frame()["action"]) == ["create"] * 4
    shown = plan.to_frame().to_string()
    assert receiver.url not in shown and "tok-" not in shown
    rerun = step.apply(spec, clients, DOCTOR)
    assert not rerun.pending, rerun.to_frame().to_string()

    name = f"{lc.PARENT}/jobs/{spec.job.name}"
    clients.scheduler.run_job(name=name)
    [body] = receiver.wait(1)
    time.sleep(1.5)  # the retry-free second run below must not notify again either
    clients.scheduler.run_job(name=name)
    time.sleep(3)
    assert len(receiver.posts) == 1, "one notification per incident"

    incident = body["incident"]
    assert body["version"] == "1.2" and incident["state"] == "open"
    assert incident["policy_name"] == f"opslib {spec.job.name} ({spec.region}) failed"
    content = incident["documentation"]["content"]
    assert spec.job.name in content and DOCTOR in content
    assert "rates API said no" in content
    run_line = next(line for line in content.splitlines() if line.startswith("run: "))
    assert len(run_line) > len("run: ")
    mails = [m for m in outbox() if m["incident_id"] == incident["incident_id"]]
    assert len(mails) == 1 and mails[0]["to"] == "ops@example.com"
    job_lines = lc.call(
        "/v2/entries:list",
        {"resourceNames": [f"projects/{lc.PROJECT}"], "filter": f'"{spec.job.name}"'},
    )[1]
    assert job_lines.get("entries"), "the run wrote lines"
    for text in (json.dumps(body), json.dumps(mails), json.dumps(job_lines), shown):
        assert receiver.url not in text and "/hook/" not in text and SECRET_VALUE not in text


def test_a_run_past_the_attempt_deadline_is_an_overrun(tmp_path, clients, receiver):
    spec = make_spec(webhook_secret(clients, receiver.url), attempt_deadline="15s")
    deploy(tmp_path, spec, clients, "time.sleep(17)")
    step.apply(spec, clients, DOCTOR)
    clients.scheduler.run_job(name=f"{lc.PARENT}/jobs/{spec.job.name}")
    [body] = receiver.wait(1, timeout=40)
    assert body["incident"]["policy_name"].endswith(" overrun")
    assert "overrun" in body["incident"]["documentation"]["content"]
    time.sleep(4)  # the run ends well after: still one notification, no "failed"
    assert len(receiver.posts) == 1


def test_alerts_are_removed_and_a_rerun_changes_nothing(clients, receiver):
    spec = make_spec(webhook_secret(clients, receiver.url))
    spec = spec.model_copy(update={"job": spec.job.model_copy(update={"runtime": "job"})})
    created = step.apply(spec, clients, DOCTOR)
    assert list(created.to_frame()["action"]) == ["create"] * 3  # no overrun for a Cloud Run job
    assert step.live(spec, clients) != ({}, {})
    removed = step.delete(spec, clients)
    assert sorted(removed.to_frame()["action"]) == ["delete"] * 3
    assert step.live(spec, clients) == ({}, {})
    assert not step.delete(spec, clients).pending


def test_a_channel_whose_secret_changes_is_replaced_its_url_never_shown(clients, receiver):
    spec = make_spec(webhook_secret(clients, receiver.url))
    step.apply(spec, clients, DOCTOR)
    other = webhook_secret(clients, receiver.url + "-moved")
    moved = spec.model_copy(
        update={
            "alerts": spec.alerts.model_copy(
                update={
                    "channels": [  # type: ignore[union-attr]
                        spec.alerts.channels[0].model_copy(update={"webhook": f"{other}:latest"}),  # type: ignore[union-attr]
                        spec.alerts.channels[1],  # type: ignore[union-attr]
                    ]
                }
            )
        }
    )
    frame = step.apply(moved, clients, DOCTOR, dry_run=True).to_frame()
    assert "delete" in set(frame["action"]) and "create" in set(frame["action"])
    assert receiver.url not in frame.to_string()
    step.delete(spec, clients)


@pytest.mark.parametrize(
    ("alerts", "key", "rule"),
    [
        ({"channels": []}, "alerts.channels", "at least one channel"),
        (
            {"channels": [{"webhook": "https://hooks.example.com/T/x"}]},
            "alerts.channels.0.webhook",
            "never the URL",
        ),
        ({"channels": [{"email": "not-an-address"}]}, "alerts.channels.0.email", "one address"),
        ({"channels": [{"email": "a@b.co", "webhook": "h"}]}, "alerts.channels.0", "exactly one"),
        ({"channels": [{"email": "a@b.co"}, {"email": "a@b.co"}]}, "alerts.channels", "twice"),
        ({"chanels": [{"email": "a@b.co"}]}, "alerts.chanels", "did you mean 'channels'"),
    ],
)
def test_a_bad_alerts_block_names_file_line_key_rule_and_fix(tmp_path, alerts, key, rule):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["alerts"] = alerts
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    text = caught.value.render()
    assert f": {key} = " in text and rule in text and "fix:" in text
    assert f"{path.name}:" in text and "hooks.example.com" not in text


def notebook_text(root: Path, url: str, tmp: Path) -> str:
    """notebooks/08_status run by papermill on the project: its outputs as text and HTML."""
    out = tmp / "08_status.ipynb"
    command = [tool("papermill"), str(ROOT / "notebooks" / "08_status.ipynb"), str(out)]
    command += ["-p", "params", str(root / "parameters"), "-k", "python3", "--no-progress-bar"]
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": url}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])]
    return json.dumps(outputs)


def actions(out: str) -> list[str]:
    """The action column of the plan table `opslib alerts` prints."""
    table = out.split("equivalent gcloud")[0].splitlines()[2:]
    return [a for line in table for a in ("create", "update", "delete", "no change") if a in line]


def test_the_command_plans_applies_reruns_without_a_write_and_destroy_removes(
    tmp_path, clients, receiver
):
    from project import add_params, make_project
    from test_fleet import mark, mutations, opslib

    url = lc.server().url
    root = make_project(tmp_path / "project")
    secret = webhook_secret(clients, receiver.url)
    alerts = {"channels": [{"webhook": secret}, {"email": "ops@example.com"}]}
    params = add_params(root, "alerting", job={"name": lc.unique("cli")}, alerts=alerts)
    rel = f"parameters/{params.name}"
    dry = opslib(root, url, "alerts", rel, "--dry-run")
    assert dry.returncode == 0 and actions(dry.stdout).count("create") == 4, dry.stdout
    assert "gcloud beta monitoring channels create" in dry.stdout
    assert "gcloud secrets versions access latest" in dry.stdout
    done = opslib(root, url, "alerts", rel)
    assert done.returncode == 0, done.stderr
    before = mark()
    again = opslib(root, url, "alerts", rel)
    assert again.returncode == 0 and actions(again.stdout) == ["no change"] * 4, again.stdout
    assert mutations(before) == []
    original = params.read_text()
    data = yaml.safe_load(original)
    data["alerts"]["channels"].append({"email": "oncall@example.com"})
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    drifted = opslib(root, url, "status", rel)
    assert "email oncall@example.com: create" in drifted.stdout, drifted.stdout
    params.write_text(original)
    spec = load_spec(params)
    line = {  # a failed run's line, as Cloud Run records the service's stdout
        "severity": "ERROR",
        "jsonPayload": {"job": spec.job.name, "run_id": "r-1", "message": "failed: boom"},
    }
    labels = {"service_name": spec.service, "location": spec.region}
    lc.call(
        "/v2/entries:write",
        {
            "logName": f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Fstdout",
            "resource": {"type": "cloud_run_revision", "labels": labels},
            "entries": [line],
        },
    )
    receiver.wait(1)
    probe = opslib(root, url, "alerts", rel, "--test")
    assert probe.returncode == 0 and probe.stdout.count(" notified ") == 2, probe.stdout
    [test] = [b for b in receiver.wait(2) if b["incident"]["policy_name"].endswith(" test")]
    assert "a test notification" in test["incident"]["documentation"]["content"]
    assert len(step.live(spec, clients)[1]) == 2, "the test policy is gone again"
    shown = opslib(root, url, "status", rel)
    assert "failed since" in shown.stdout, shown.stdout + shown.stderr
    assert "oncall" not in shown.stdout, "no alerts drift once the file is as applied"
    page = notebook_text(root, url, tmp_path)
    assert spec.job.name in page and "failed" in page and "open" in page
    assert receiver.url not in page and "/hook/" not in page
    gone = opslib(root, url, "destroy", rel)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "gcloud alpha monitoring policies delete" in gone.stdout
    assert "--policy=" in dry.stdout and "conditionMatchedLog" in dry.stdout
    assert step.live(spec, clients) == ({}, {})
    for out in (dry, done, again, drifted, probe, shown, gone):
        assert receiver.url not in out.stdout + out.stderr


def test_a_failing_cloud_run_job_notifies_once(tmp_path, monkeypatch, clients, receiver):
    from project import add_params, make_project

    from opslib.fleet import steps as fleet_steps
    from opslib.fleet.load import open_fleet

    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)
    root = make_project(tmp_path / "project")
    alerts = {"channels": [{"webhook": webhook_secret(clients, receiver.url)}]}
    job = {"name": lc.unique("night"), "tasks": 1, "parallelism": 1, "max_retries": 0}
    nightly = ROOT / "parameters" / "nightly-backfill.yaml"
    params = add_params(root, "night", nightly, service=lc.unique("svc"), job=job, alerts=alerts)
    fleet = open_fleet(params)
    fleet_steps.write_functions(fleet)
    spec = fleet.sessions[0].spec
    module = root / "service" / "scripts" / "batch" / f"{spec.job.module}.py"
    anchor = "    processed, errors = 0, 0\n"
    module.write_text(
        module.read_text().replace(
            anchor, f"{anchor}    raise RuntimeError('backfill source gone')\n"
        )
    )
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)
    step4.pause(spec, clients)
    plan = step.apply(spec, clients, DOCTOR)
    assert sorted(plan.to_frame()["action"]) == ["create"] * 2  # channel, failed
    clients.scheduler.run_job(name=f"{lc.PARENT}/jobs/{spec.job.name}")
    [body] = receiver.wait(1, timeout=60)
    content = body["incident"]["documentation"]["content"]
    assert body["incident"]["resource"]["type"] == "cloud_run_job"
    assert spec.job.name in content and "backfill source gone" in content
    time.sleep(3)  # the execution's later lines join the same incident
    assert len(receiver.posts) == 1
    step.delete(spec, clients)
