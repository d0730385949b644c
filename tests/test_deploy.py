"""Step 3 against localcloud: build, deploy, traffic, invoker IAM, idempotency, failed revisions."""

from __future__ import annotations

from pathlib import Path

import lc
import pytest
import yaml
from google.api_core import exceptions

from conftest import EXAMPLE, copy_service
from opslib.cloud.clients import Clients
from opslib.core.errors import BadInput, OpslibError
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps.deploy import live as deploy_live
from opslib.steps.deploy import service as step3
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.scaffold import scaffold

MUTATING = {"POST", "PATCH", "PUT", "DELETE"}


def make_spec(service: str, **deploy) -> Spec:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["service"] = service
    data["deploy"] = {**data["deploy"], "min_instances": 0, **deploy}
    return Spec.model_validate(data)


def service_copy(tmp: Path, spec: Spec) -> Path:
    folder = tmp / "service"
    copy_service(folder)
    scaffold(spec, folder)
    patch_endpoint(spec, folder)
    return folder


def calls_since(mark: int) -> list[dict]:
    return lc.call(f"/_localcloud/calls?since={mark}")[1]["calls"]


def mark() -> int:
    return lc.call("/_localcloud/calls?since=0")[1]["next"]


@pytest.fixture
def clients() -> Clients:
    return Clients("local", lc.PROJECT, lc.server().url)


def test_deploy_then_rerun_changes_nothing(tmp_path, clients):
    spec = make_spec(lc.unique("dep"))
    folder = service_copy(tmp_path, spec)
    plan, frame = step3.deploy(spec, folder, clients, progress=False)
    assert [c.action for c in plan.changes if c.step != "routes"] == ["create"] * 3
    routes = {c.resource: c.action for c in plan.changes if c.step == "routes"}
    new = {"route /", "route /health", f"route {spec.job.route}"}
    assert routes == dict.fromkeys(new, "create")  # a new service: every route is added
    assert frame.iloc[0]["percent"] == 100 and frame.iloc[0]["ready"] == "yes"
    assert frame.iloc[0]["revision"].startswith(f"{spec.service}-00001-")
    assert (
        "gcloud run deploy" in plan.changes[1].gcloud
        and "--no-allow-unauthenticated" in plan.changes[1].gcloud
    )
    assert "docker.pkg.dev" in plan.changes[0].gcloud and "gcr.io" not in plan.changes[0].gcloud
    policy = clients.run.get_iam_policy(request={"resource": names.service(spec)})
    members = {m for b in policy.bindings for m in b.members}
    assert members == {f"serviceAccount:{spec.invoker_account}"}
    before = mark()
    again, _ = step3.deploy(spec, folder, clients, progress=False)
    assert {c.action for c in again.changes} == {"no change"}
    assert [c for c in calls_since(before) if c["method"] in MUTATING] == []


def test_changed_resources_roll_a_new_revision(tmp_path, clients):
    spec = make_spec(lc.unique("upd"))
    folder = service_copy(tmp_path, spec)
    step3.deploy(spec, folder, clients, progress=False)
    bigger = make_spec(spec.service, memory="1Gi", cpu=1)
    plan, frame = step3.deploy(bigger, folder, clients, progress=False)
    assert plan.changes[1].action == "update" and set(plan.changes[1].fields) == {"cpu", "memory"}
    assert plan.changes[0].action == "no change", "same source: no new build"
    assert (
        frame.iloc[0]["revision"].startswith(f"{spec.service}-00002-")
        and frame.iloc[0]["percent"] == 100
    )


def test_failed_revision_reports_reason_and_logs_and_keeps_traffic(tmp_path, clients):
    spec = make_spec(lc.unique("brk"))
    folder = service_copy(tmp_path, spec)
    _, good = step3.deploy(spec, folder, clients, progress=False)
    endpoint = folder / "batch_endpoint.py"
    endpoint.write_text(endpoint.read_text() + "\nraise RuntimeError('boom at import')\n")
    with pytest.raises(OpslibError) as info:
        step3.deploy(spec, folder, clients, progress=False)
    text = info.value.render()
    assert "failed" in text and "listen on the port" in text and "boom at import" in text
    after = deploy_live.status(spec, clients)
    assert after.iloc[0]["revision"] == good.iloc[0]["revision"] and after.iloc[0]["percent"] == 100


def test_secrets_are_mounted_as_secret_key_refs(tmp_path, clients):
    secret_id = lc.unique("fx-key")
    clients.secrets.create_secret(
        parent=f"projects/{lc.PROJECT}",
        secret_id=secret_id,
        secret={"replication": {"automatic": {}}},
    )
    clients.secrets.add_secret_version(
        parent=f"projects/{lc.PROJECT}/secrets/{secret_id}", payload={"data": b"s3cr3t-value"}
    )
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(service=lc.unique("sec"), secrets={"FX_API_KEY": f"{secret_id}:latest"})
    data["deploy"]["min_instances"] = 0
    spec = Spec.model_validate(data)
    plan, _ = step3.deploy(spec, service_copy(tmp_path, spec), clients, progress=False)
    assert f"--set-secrets=FX_API_KEY={secret_id}:latest" in plan.changes[1].gcloud
    live = clients.run.get_service(name=names.service(spec))
    ref = live.template.containers[0].env[0].value_source.secret_key_ref
    assert (ref.secret, ref.version) == (secret_id, "latest")
    assert "s3cr3t-value" not in repr(plan.to_frame()) + repr(live)


def test_pack_is_deterministic_and_honours_gcloudignore(tmp_path):
    spec = make_spec("pack")
    folder = service_copy(tmp_path, spec)
    first = step3.pack(folder)
    (folder / "tests" / "scratch.txt").write_text("ignored")
    assert step3.pack(folder).tag == first.tag
    (folder / "scripts" / "batch" / "fx_rates.py").write_text("# changed\n")
    assert step3.pack(folder).tag != first.tag


def test_missing_service_reads_as_create(tmp_path, clients):
    spec = make_spec(lc.unique("dry"))
    plan, frame = step3.deploy(spec, service_copy(tmp_path, spec), clients, dry_run=True)
    assert [c.action for c in plan.changes if c.step != "routes"] == ["create"] * 3
    assert frame.empty
    with pytest.raises(exceptions.NotFound):
        clients.run.get_service(name=names.service(spec))


def test_missing_secret_stops_before_any_change(tmp_path, clients):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(service=lc.unique("nosec"), secrets={"FX_API_KEY": f"{lc.unique('absent')}:latest"})
    spec = Spec.model_validate(data)
    folder = service_copy(tmp_path, spec)
    before = mark()
    with pytest.raises(BadInput) as info:
        step3.deploy(spec, folder, clients, progress=False)
    assert "FX_API_KEY" in str(info.value) and "opslib secrets add" in info.value.fix
    assert [c for c in calls_since(before) if c["method"] in MUTATING] == []


def test_syntax_error_fails_the_build_and_changes_nothing_live(tmp_path, clients):
    spec = make_spec(lc.unique("syn"))
    folder = service_copy(tmp_path, spec)
    _, good = step3.deploy(spec, folder, clients, progress=False)
    module = folder / "scripts" / "batch" / f"{spec.job.module}.py"
    module.write_text(module.read_text() + "\ndef oops(:\n")
    with pytest.raises(OpslibError) as info:
        step3.deploy(spec, folder, clients, progress=False)
    assert "compileall" in str(info.value) and "Dockerfile or requirements.txt" in info.value.fix
    module.write_text(module.read_text().replace("\ndef oops(:\n", ""))
    endpoint = folder / "batch_endpoint.py"  # the preflight reads its routes: stops before a build
    endpoint.write_text(endpoint.read_text() + "\ndef oops(:\n")
    before = mark()
    with pytest.raises(BadInput) as bad:
        step3.deploy(spec, folder, clients, progress=False)
    assert "batch_endpoint.py:" in str(bad.value) and "not valid Python" in str(bad.value)
    assert [c for c in calls_since(before) if c["method"] in MUTATING] == []
    after = deploy_live.status(spec, clients)
    assert after.iloc[0]["revision"] == good.iloc[0]["revision"] and after.iloc[0]["percent"] == 100
