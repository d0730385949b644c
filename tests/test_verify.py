"""Deploy -> schedule -> verify against localcloud, and the failures verify must name."""

from __future__ import annotations

from pathlib import Path

import lc
import pytest
import yaml

from conftest import EXAMPLE, copy_service
from opslib.cloud.clients import Clients
from opslib.spec.model import Spec
from opslib.steps import schedule as step4
from opslib.steps import verify as step5
from opslib.steps.deploy import service as step3
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold


def make_spec(**schedule) -> Spec:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"] = lc.unique("ver")
    data["job"]["name"] = lc.unique("job")
    data["job"].pop("expected_duration", None)
    data["deploy"]["min_instances"] = 0
    data["schedule"].update(schedule)
    return Spec.model_validate(data)


def flow(tmp: Path, spec: Spec, clients: Clients, edit=None) -> step5.Verdict:
    folder = tmp / "service"
    copy_service(folder)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    if edit:
        edit(folder / "scripts" / "batch" / f"{spec.job.module}.py")
    step3.deploy(spec, folder, clients, progress=False)
    step4.schedule(spec, clients)
    step4.pause(spec, clients)  # only the run verify asks for, not the clock other tests move
    return step5.verify(spec, clients, progress=False)


@pytest.fixture
def clients() -> Clients:
    return Clients("local", lc.PROJECT, lc.server().url)


def test_full_flow_passes(tmp_path, clients):
    spec = make_spec()
    verdict = flow(tmp_path, spec, clients)
    assert verdict.passed, verdict.checks.to_string()
    assert verdict.attempt == "OK"
    done = verdict.logs[
        (verdict.logs["job"] == spec.job.name) & (verdict.logs["status"] == "success")
    ]
    assert len(done) == 1 and done.iloc[0]["errors"] == 0
    assert set(verdict.logs.columns) >= {
        "timestamp",
        "severity",
        "message",
        "job",
        "processed",
        "errors",
        "status",
        "latency",
    }


def _raise(module: Path) -> None:
    module.write_text(
        module.read_text().replace(
            "    processed, errors = 0, 0\n",
            "    processed, errors = 0, 0\n    raise RuntimeError('rates API said no')\n",
            1,
        )
    )


def test_failing_job_fails_with_its_error_lines(tmp_path, clients):
    spec = make_spec()
    verdict = flow(tmp_path, spec, clients, edit=_raise)
    assert not verdict.passed and verdict.attempt == "INTERNAL"
    errors = step5.error_lines(verdict)
    assert any("rates API said no" in str(m) for m in errors["message"])


def test_wrong_audience_is_reported_as_an_auth_error(tmp_path, clients):
    spec = make_spec(audience="https://wrong.example")
    verdict = flow(tmp_path, spec, clients)
    assert not verdict.passed and verdict.attempt == "UNAUTHENTICATED"
    assert "auth error" in verdict.checks.iloc[0]["value"]


def _slow(module: Path) -> None:
    text = module.read_text().replace("import logging\n", "import logging\nimport time\n", 1)
    module.write_text(
        text.replace(
            "    processed, errors = 0, 0\n",
            "    processed, errors = 0, 0\n    time.sleep(17)\n",
            1,
        )
    )


def test_job_slower_than_the_deadline_is_a_deadline_problem(tmp_path, clients):
    spec = make_spec(attempt_deadline="15s")
    verdict = flow(tmp_path, spec, clients, edit=_slow)
    assert not verdict.passed and verdict.attempt == "DEADLINE_EXCEEDED"
    assert "504/deadline" in verdict.checks.iloc[0]["value"]
