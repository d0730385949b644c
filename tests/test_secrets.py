"""opslib.steps.secrets against a real localcloud: idempotent secrets and versions, .env import,
reference checks before a deploy, and no secret value in anything a user can see."""

from __future__ import annotations

import base64
import logging
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import lc
import pandas as pd
import pytest
from google.api_core import exceptions
from lc import PROJECT, call, server, unique

from opslib.cloud.clients import Clients
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Plan
from opslib.localcloud import control
from opslib.spec.loader import load_spec
from opslib.steps import dotenv, secrets


@pytest.fixture
def clients(monkeypatch) -> Clients:
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", server().url)
    return Clients("local", PROJECT, server().url)


def mark() -> int:
    """The position in localcloud's call log; calls after it are this test's."""
    return call("/_localcloud/calls?since=1000000000")[1]["next"]


def writes_since(since: int) -> list[tuple[str, str]]:
    """Secret Manager calls that change something (anything but GET) since `since`."""
    made = call(f"/_localcloud/calls?since={since}")[1]["calls"]
    return [
        (c["method"], c["path"]) for c in made if c["method"] != "GET" and "/secrets" in c["path"]
    ]


def latest_value(clients: Clients, secret_id: str) -> bytes:
    name = f"projects/{PROJECT}/secrets/{secret_id}/versions/latest"
    return clients.secrets.access_secret_version(name=name).payload.data


def key_suffix() -> str:
    return uuid.uuid4().hex[:8].upper()


def test_ensure_secret_creates_once(clients):
    secret_id = unique("api-key")
    planned = secrets.ensure_secret(clients, PROJECT, secret_id, dry_run=True)
    assert planned == Change(
        "secrets",
        f"secret {secret_id}",
        "create",
        ("replication",),
        "automatic replication",
        f"gcloud secrets create {secret_id} --replication-policy=automatic --project={PROJECT}",
    )
    with pytest.raises(exceptions.NotFound):
        clients.secrets.get_secret(name=f"projects/{PROJECT}/secrets/{secret_id}")

    assert secrets.ensure_secret(clients, PROJECT, secret_id) == planned
    got = clients.secrets.get_secret(name=f"projects/{PROJECT}/secrets/{secret_id}")
    assert "automatic" in got.replication

    since = mark()
    again = secrets.ensure_secret(clients, PROJECT, secret_id)
    assert (again.action, again.gcloud) == ("no change", "")
    assert writes_since(since) == []


def test_ensure_secret_rejects_bad_id(clients):
    with pytest.raises(BadInput, match="not 1-255 letters"):
        secrets.ensure_secret(clients, PROJECT, "not valid!")


def test_add_version_only_when_the_value_changes(clients):
    secret_id = unique("token")
    secrets.ensure_secret(clients, PROJECT, secret_id)
    command = f"gcloud secrets versions add {secret_id} --data-file=- --project={PROJECT}"

    first = secrets.add_version(clients, PROJECT, secret_id, "v1-value")
    assert (first.action, first.detail, first.gcloud) == ("create", "version 1", command)
    since = mark()
    for same in ("v1-value", b"v1-value"):
        unchanged = secrets.add_version(clients, PROJECT, secret_id, same)
        assert (unchanged.action, unchanged.detail) == ("no change", "same value as version 1")
    assert writes_since(since) == []

    planned = secrets.add_version(clients, PROJECT, secret_id, "v2-value", dry_run=True)
    assert (planned.action, planned.detail) == ("create", "new version")
    assert writes_since(since) == []
    assert secrets.add_version(clients, PROJECT, secret_id, "v2-value").detail == "version 2"
    assert latest_value(clients, secret_id) == b"v2-value"

    versions = secrets.list_versions(clients, PROJECT, secret_id)
    assert versions[["version", "state"]].values.tolist() == [[2, "ENABLED"], [1, "ENABLED"]]
    assert isinstance(versions["created"].iloc[0], pd.Timestamp)
    version = clients.secrets.get_secret_version(
        name=f"projects/{PROJECT}/secrets/{secret_id}/versions/2"
    )
    assert version.client_specified_payload_checksum  # we sent data_crc32c


def test_add_version_after_latest_is_disabled(clients):
    """`:latest` resolves to the newest version: if that one is disabled, add a fresh one."""
    secret_id = unique("rotated")
    secrets.ensure_secret(clients, PROJECT, secret_id)
    secrets.add_version(clients, PROJECT, secret_id, "same")
    v2 = secrets.add_version(clients, PROJECT, secret_id, "other")
    parent = f"projects/{PROJECT}/secrets/{secret_id}"
    clients.secrets.disable_secret_version(name=f"{parent}/versions/2")
    assert v2.detail == "version 2"
    assert secrets.add_version(clients, PROJECT, secret_id, "same").detail == "version 3"


def test_add_version_needs_the_secret(clients):
    secret_id = unique("missing")
    planned = secrets.add_version(clients, PROJECT, secret_id, "x", dry_run=True)
    assert planned.action == "create"
    with pytest.raises(OpslibError) as info:
        secrets.add_version(clients, PROJECT, secret_id, "x")
    assert "NOT_FOUND (404)" in str(info.value) and "gcloud secrets create" in info.value.fix
    with pytest.raises(OpslibError, match="NOT_FOUND"):
        secrets.list_versions(clients, PROJECT, secret_id)


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "empty"), ("x" * (64 * 1024 + 1), "at most 65536"), (123, "not int")],
)
def test_add_version_rejects_bad_values(clients, value, message):
    with pytest.raises(BadInput, match=message):
        secrets.add_version(clients, PROJECT, "any-id", value)


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_import_env_creates_secrets_and_is_idempotent(clients, tmp_path):
    s = key_suffix()
    path = write_env(
        tmp_path,
        f"""# service credentials
export FX_API_KEY_{s}="abc 123" # the FX provider
DB_PASSWORD_{s}='p@ss#word $HOME'

PLAIN_{s} = value with spaces   # trailing comment
  # indented comment
MULTI_{s}="line1\\nline2 \\"quoted\\"
line3"
SKIPPED_{s}=not imported
""",
    )
    keys = [f"FX_API_KEY_{s}", f"DB_PASSWORD_{s}", f"PLAIN_{s}", f"MULTI_{s}"]
    expected = {
        f"fx-api-key-{s.lower()}": b"abc 123",
        f"db-password-{s.lower()}": b"p@ss#word $HOME",
        f"plain-{s.lower()}": b"value with spaces",
        f"multi-{s.lower()}": b'line1\nline2 "quoted"\nline3',
    }

    since = mark()
    planned = secrets.import_env(clients, PROJECT, path, keys=keys, dry_run=True)
    assert [c.action for c in planned.changes] == ["create"] * 8
    assert writes_since(since) == []

    plan = secrets.import_env(clients, PROJECT, path, keys=keys)
    assert [method for method, _ in writes_since(since)] == ["POST"] * 8
    assert [c.resource for c in plan.changes[::2]] == [f"secret {i}" for i in expected]
    assert [(c.action, c.detail) for c in plan.changes[1::2]] == [("create", "version 1")] * 4
    assert {i: latest_value(clients, i) for i in expected} == expected
    with pytest.raises(exceptions.NotFound):
        clients.secrets.get_secret(name=f"projects/{PROJECT}/secrets/skipped-{s.lower()}")

    since = mark()
    again = secrets.import_env(clients, PROJECT, str(path), keys=keys)
    assert [c.action for c in again.changes] == ["no change"] * 8
    assert again.pending == []
    assert writes_since(since) == []


def test_parse_env_without_keys_reads_every_line(tmp_path):
    path = write_env(tmp_path, "A=1\nexport B='2'\n# C=3\nD=\"4\" # four\n")
    entries = dotenv.parse_env(path)
    assert [(e.key, e.line, e.value) for e in entries] == [
        ("A", 1, "1"),
        ("B", 2, "2"),
        ("D", 4, "4"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "names"),
    [
        ("GOOD=1\n# fine\nthis is pasted-token-text\n", 3, "not KEY=VALUE"),
        ("A=1\nB='never closed\nC=3\n", 2, "B: the ' quote is never closed"),
        ('A="x" y\n', 1, "A: text after the closing"),
        ("PORT=8080\n", 1, "PORT: Cloud Run reserves"),
        ("BAD.KEY=1\n", 1, "BAD.KEY: secret id 'bad.key'"),
        ("A_B=1\nA-B=2\n", 2, "A-B: maps to secret a-b, as A_B on line 1"),
    ],
)
def test_import_env_bad_line_names_file_line_and_key(clients, tmp_path, text, line, names):
    path = write_env(tmp_path, text)
    since = mark()
    with pytest.raises(BadInput) as info:
        secrets.import_env(clients, PROJECT, path)
    assert info.value.where == f"{path}:{line}"
    assert names in info.value.what
    assert "pasted-token-text" not in str(info.value)
    assert writes_since(since) == []


def test_import_env_missing_file_and_missing_key(clients, tmp_path):
    with pytest.raises(BadInput, match=r"no such \.env file") as info:
        secrets.import_env(clients, PROJECT, tmp_path / "absent.env")
    assert info.value.exit_code == 2
    path = write_env(tmp_path, "A=1\n")
    with pytest.raises(BadInput, match="no line for NOPE"):
        secrets.import_env(clients, PROJECT, path, keys=["A", "NOPE"])


def test_check_refs(clients, monkeypatch, write_params):
    ok_id, pinned_id, disabled_id, missing_id = (unique(p) for p in ("ok", "pin", "off", "gone"))
    for secret_id in (ok_id, pinned_id, disabled_id):
        secrets.ensure_secret(clients, PROJECT, secret_id)
        secrets.add_version(clients, PROJECT, secret_id, "one")
    secrets.add_version(clients, PROJECT, disabled_id, "two")
    clients.secrets.disable_secret_version(
        name=f"projects/{PROJECT}/secrets/{disabled_id}/versions/2"
    )
    spec = load_spec(
        write_params(
            secrets={
                "OK": f"{ok_id}:latest",
                "PINNED": f"projects/{PROJECT}/secrets/{pinned_id}:1",
                "OFF": f"{disabled_id}:latest",
                "OLD": f"{disabled_id}:1",
                "NO_VERSION": f"{ok_id}:7",
                "NO_SECRET": f"{missing_id}:latest",
            }
        )
    )
    table = secrets.check_refs(lc.clients(spec.project), spec)
    assert list(table.columns) == ["env", "secret", "version", "state", "ok", "fix"]
    assert table[["env", "version", "state", "ok"]].values.tolist() == [
        ["OK", "latest", "ENABLED", True],
        ["PINNED", "1", "ENABLED", True],
        ["OFF", "latest", "DISABLED", False],
        ["OLD", "1", "ENABLED", True],
        ["NO_VERSION", "7", "VERSION_NOT_FOUND", False],
        ["NO_SECRET", "latest", "SECRET_NOT_FOUND", False],
    ]
    fixes = dict(zip(table["env"], table["fix"], strict=True))
    assert fixes["OK"] == ""
    assert fixes["OFF"].startswith(f"gcloud secrets versions enable latest --secret={disabled_id}")
    assert f"gcloud secrets create {missing_id}" in fixes["NO_SECRET"]


class EchoingSecrets:
    """The real client, except that adding a version fails with an error quoting the payload."""

    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def add_secret_version(self, parent: str, payload: dict):
        data = payload["data"]
        raise exceptions.BadRequest(f"Invalid payload {data!r} ({base64.b64encode(data).decode()})")


def test_no_secret_value_anywhere(clients, tmp_path, capsys, caplog):
    value = f"hunter2-{uuid.uuid4().hex}"
    forms = [value, base64.b64encode(value.encode()).decode()]
    secret_id, s = unique("hush"), key_suffix()
    env_path = write_env(tmp_path, f"HUSH_{s}={value}\nBROKEN {value}\n")
    transport = logging.getLogger(type(clients.secrets.transport).__module__)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=transport.name)
    transport.addHandler(caplog.handler)  # google's loggers may not propagate to the root
    try:
        shown = exercise(clients, secret_id, value, env_path)
    finally:
        transport.removeHandler(caplog.handler)

    out, err = capsys.readouterr()
    records = [repr(vars(record)) for record in caplog.records]
    assert any("httpRequest" in r for r in records), "the client's debug records were not seen"
    for text in [*shown, out, err, caplog.text, *records]:
        for form in forms:
            assert form not in text


def exercise(clients: Clients, secret_id: str, value: str, env_path: Path) -> list[str]:
    """Every public entry point with `value`; returns all text they produced."""
    shown: list[object] = [
        secrets.ensure_secret(clients, PROJECT, secret_id),
        secrets.add_version(clients, PROJECT, secret_id, value, dry_run=True),
        secrets.add_version(clients, PROJECT, secret_id, value),
        secrets.add_version(clients, PROJECT, secret_id, value),
        secrets.list_versions(clients, PROJECT, secret_id).to_string(),
    ]
    good = env_path.with_name("good.env")
    good.write_text(env_path.read_text().splitlines()[0] + "\n")
    plan = secrets.import_env(clients, PROJECT, good)
    shown += [plan, plan.to_frame().to_string(), dotenv.parse_env(good)]
    errors: list[BaseException] = []
    for attempt in (
        lambda: secrets.import_env(clients, PROJECT, env_path),
        lambda: secrets.add_version(clients, PROJECT, unique("absent"), value),
        lambda: secrets.add_version(clients, PROJECT, secret_id, value + "x" * 70000),
        lambda: secrets.add_version(echoing(clients), PROJECT, secret_id, value + "-new"),
    ):
        with pytest.raises(OpslibError) as info:
            attempt()
        errors.append(info.value)
    assert "message withheld" in str(errors[-1])
    for error in errors:
        assert error.__cause__ is None and error.__context__ is None
        shown += [str(error), repr(error), error.fix]
    return [repr(item) if not isinstance(item, str) else item for item in shown]


def echoing(clients: Clients) -> Clients:
    fake = Clients("local", PROJECT, clients.endpoint)
    fake.__dict__["secrets"] = EchoingSecrets(clients.secrets)
    return fake


GCLOUD = shutil.which("gcloud")


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_printed_gcloud_commands_work(clients, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env.update(control.environment(server().url))
    env.update(
        {
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
            "CLOUDSDK_CORE_PROJECT": PROJECT,
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        }
    )

    def run(command: str, stdin: bytes | None = None) -> None:
        words = shlex.split(command)
        assert words[0] == "gcloud"
        done = subprocess.run(
            [GCLOUD, *words[1:]], env=env, input=stdin, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    secret_id, value = unique("by-gcloud"), f"from-stdin-{uuid.uuid4().hex}"
    run(secrets.ensure_secret(clients, PROJECT, secret_id, dry_run=True).gcloud)
    assert secrets.ensure_secret(clients, PROJECT, secret_id).action == "no change"

    command = secrets.add_version(clients, PROJECT, secret_id, value, dry_run=True).gcloud
    assert value not in command
    run(command, stdin=value.encode())
    assert latest_value(clients, secret_id) == value.encode()
    unchanged = secrets.add_version(clients, PROJECT, secret_id, value)
    assert (unchanged.action, unchanged.detail) == ("no change", "same value as version 1")
    versions = secrets.list_versions(clients, PROJECT, secret_id)
    assert versions[["version", "state"]].values.tolist() == [[1, "ENABLED"]]


def test_plan_frame_has_gcloud_column(clients):
    secret_id = unique("framed")
    plan = Plan([secrets.ensure_secret(clients, PROJECT, secret_id, dry_run=True)])
    frame = plan.to_frame()
    assert frame["gcloud"].tolist() == [
        f"gcloud secrets create {secret_id} --replication-policy=automatic --project={PROJECT}"
    ]
