"""The same deploy -> schedule -> verify flow against real Google Cloud, when asked to.

Set OPSLIB_LIVE_PROJECT (and OPSLIB_LIVE_REGION, default asia-northeast3) with Application
Default Credentials that may build, deploy and schedule in that project. Otherwise every test
here is skipped, and says why: no test in the default run needs credentials or the internet.
"""

from __future__ import annotations

import os

import pytest
import yaml

from conftest import EXAMPLE, copy_service

PROJECT = os.environ.get("OPSLIB_LIVE_PROJECT")
pytestmark = pytest.mark.skipif(
    not PROJECT,
    reason="live tier: set OPSLIB_LIVE_PROJECT (and credentials) to run against Google Cloud",
)


def test_live_flow(tmp_path):
    from opslib.cloud.clients import Clients
    from opslib.spec.model import Spec
    from opslib.steps import schedule, verify
    from opslib.steps.deploy import service as deploy
    from opslib.steps.endpoint.patch import patch_endpoint
    from opslib.steps.scaffold import scaffold

    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(
        target="gcp",
        project=PROJECT,
        region=os.environ.get("OPSLIB_LIVE_REGION", "asia-northeast3"),
    )
    data["service"] = "opslib-live-test"
    data["schedule"]["service_account"] = os.environ.get(
        "OPSLIB_LIVE_INVOKER", f"opslib-invoker@{PROJECT}.iam.gserviceaccount.com"
    )
    spec = Spec.model_validate(data)
    folder = tmp_path / "service"
    copy_service(folder)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    clients = Clients("gcp", spec.project)
    deploy.deploy(spec, folder, clients, progress=False)
    again = deploy.deploy(spec, folder, clients, progress=False)[0]
    assert {c.action for c in again.changes} == {"no change"}, again.to_frame().to_string()
    schedule.schedule(spec, clients)
    schedule.pause(spec, clients)
    verdict = verify.verify(spec, clients, progress=False)
    assert verdict.passed, verdict.checks.to_string()
