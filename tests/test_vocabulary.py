"""One vocabulary: names, rpc codes and Google's errors each live once and read the same way.

Google's errors come from the real localcloud through the official clients where it gives them
(NOT_FOUND, INVALID_ARGUMENT with its fields, ALREADY_EXISTS, a target that does not answer);
the two it cannot give yet (a disabled API, a denied call) are Google's documented JSON answers
turned into the client's exception by google-api-core itself. A source scan keeps names and
code names from being built again outside their module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import scheduler_v1

from conftest import ROOT
from opslib.cloud import codes
from opslib.cloud.clients import Clients
from opslib.cloud.errors import call, google_errors, translate
from opslib.core.errors import BadInput, OpslibError
from opslib.spec import names
from opslib.spec.loader import load_spec

OPSLIB = ROOT / "opslib"


def _sources(skip: tuple[str, ...]) -> list[tuple[Path, str]]:
    found = []
    for path in sorted(OPSLIB.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("opslib/localcloud/") or relative in skip:
            continue
        found.append((path, path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize(
    ("pattern", "home"),
    [
        (r"f\"projects/\{", "opslib/spec/names.py"),  # resource names
        (r"code_pb2", "opslib/cloud/codes.py"),  # rpc code names
        (r"\(\{exc\.code\}\)", "opslib/cloud/errors.py"),  # Google's errors as text
        (r"_DEFAULT = |or 600\b|\"512Mi\"", "opslib/spec/defaults.py"),  # Google's defaults
    ],
)
def test_each_word_of_the_vocabulary_is_built_in_one_place(pattern, home):
    """A page that formats a name, a code or an error by hand would drift from the others."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path, text in _sources((home,))
        for number, line in enumerate(text.splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert found == [], f"built outside {home}: {found}"


def test_rpc_code_names():
    assert [codes.name(c) for c in (None, 0, 4, 5, 7, 16, 999)] == [
        "OK",
        "OK",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "999",
    ]
    assert codes.status_text(13, "boom") == "INTERNAL: boom"


def test_names_of_an_automation():
    example = load_spec(ROOT / "parameters" / "example.yaml")
    base = "projects/demo-project/locations/asia-northeast3"
    assert names.service(example) == f"{base}/services/batch-service"
    assert names.scheduler_job(example) == f"{base}/jobs/fx-rates"
    assert names.run_job_url(example) == f"https://run.googleapis.com/v2/{base}/jobs/fx-rates:run"
    assert names.secret_version("p", "key") == "projects/p/secrets/key/versions/latest"
    assert names.image(example, "t1").endswith("/demo-project/opslib/batch-service:t1")


def _clients() -> Clients:
    return lc.clients()


def test_not_found_from_localcloud_names_the_call_and_a_fix():
    clients = _clients()
    name = f"{lc.PARENT}/jobs/{lc.unique('absent')}"
    assert call(clients.scheduler.get_job, "w", "scheduler", missing_ok=True, name=name) is None
    with pytest.raises(OpslibError) as info:
        call(clients.scheduler.get_job, "schedule job x", "scheduler", name=name)
    assert type(info.value) is OpslibError and info.value.exit_code == 1
    assert str(info.value).startswith("schedule job x: NOT_FOUND (404): ")
    assert info.value.fix == "check the project, the region and the name"


def test_a_rejected_field_is_bad_input_naming_the_field():
    """Google's 400 (here localcloud's, with its fieldViolations) is exit 2, field named."""
    clients = _clients()
    job = scheduler_v1.Job(
        name=f"{lc.PARENT}/jobs/{lc.unique('bad')}",
        schedule="61 * * * *",
        http_target={"uri": "https://example.com/x"},
    )
    with pytest.raises(BadInput) as info:
        call(
            clients.scheduler.create_job, "schedule job bad", "scheduler", parent=lc.PARENT, job=job
        )
    assert info.value.exit_code == 2 and "INVALID_ARGUMENT (400)" in info.value.what
    assert "opslib check PARAMS" in info.value.fix


def test_already_exists_and_an_unreachable_target():
    clients = _clients()
    secret_id = lc.unique("vocab")
    parent = f"projects/{lc.PROJECT}"
    automatic = {"replication": {"automatic": {}}}
    clients.secrets.create_secret(parent=parent, secret_id=secret_id, secret=automatic)
    with pytest.raises(OpslibError) as info, google_errors("secret vocab", "secretmanager"):
        clients.secrets.create_secret(parent=parent, secret_id=secret_id, secret=automatic)
    assert "ALREADY_EXISTS (409)" in info.value.what and "run the step again" in info.value.fix
    clients.secrets.delete_secret(name=names.secret(lc.PROJECT, secret_id))
    nowhere = Clients("local", lc.PROJECT, "http://127.0.0.1:9")
    with pytest.raises(OpslibError) as info:
        call(nowhere.scheduler.get_job, "status", "scheduler", name=f"{lc.PARENT}/jobs/x")
    assert "cannot reach the target" in info.value.what
    assert "opslib localcloud start" in info.value.fix


def _google_answer(status: int, body: dict) -> exceptions.GoogleAPICallError:
    """Google's JSON error answer, raised as the REST client raises it (api-core's own code)."""
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.request = requests.Request("GET", "https://run.googleapis.com/v2/x").prepare()
    return exceptions.from_http_response(response)


def test_a_disabled_api_and_a_denied_call_say_what_to_enable_and_grant():
    disabled = _google_answer(
        403,
        {
            "error": {
                "code": 403,
                "message": "Cloud Run Admin API has not been used in project 123 before or it "
                "is disabled.",
                "status": "PERMISSION_DENIED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SERVICE_DISABLED",
                        "domain": "googleapis.com",
                        "metadata": {"service": "run.googleapis.com", "consumer": "projects/123"},
                    }
                ],
            }
        },
    )
    assert type(disabled) is exceptions.Forbidden  # not PermissionDenied: the reason to map once
    error = translate(disabled, "deploy of s", "run")
    assert error.fix == "enable the API: gcloud services enable run.googleapis.com"
    denied = _google_answer(
        403, {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}
    )
    assert codes.of_error(denied) == "PERMISSION_DENIED"
    assert translate(denied, "w", "scheduler").fix == (
        "grant your account roles/cloudscheduler.admin on the project"
    )
    assert translate(denied, "w", "scheduler", "grant viewer roles").fix == "grant viewer roles"


def test_a_message_quoting_a_secret_value_is_withheld():
    answer = _google_answer(
        400,
        {
            "error": {
                "code": 400,
                "message": "bad payload s3cr3t-value",
                "status": "INVALID_ARGUMENT",
            }
        },
    )
    error = translate(answer, "secret x", "secretmanager", withhold=["s3cr3t-value"])
    assert "s3cr3t" not in str(error) and "withheld" in error.what
