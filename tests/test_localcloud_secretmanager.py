"""Secret Manager on localcloud through the official client (REST), with Google's errors."""

from __future__ import annotations

import google_crc32c
import pytest
from google.api_core import exceptions
from google.cloud import secretmanager_v1
from lc import PROJECT, call, client_kwargs, unique


@pytest.fixture(scope="module")
def sm():
    return secretmanager_v1.SecretManagerServiceClient(**client_kwargs())


def make(sm, name: str | None = None) -> secretmanager_v1.Secret:
    return sm.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id=name or unique("key"),
        secret={"replication": {"automatic": {}}},
    )


def test_versions_latest_and_checksums(sm):
    secret = make(sm)
    assert secret.name.startswith("projects/") and secret.name.split("/")[1].isdigit()
    v1 = sm.add_secret_version(parent=secret.name, payload={"data": b"s3cr3t"})
    v2 = sm.add_secret_version(
        parent=secret.name,
        payload={"data": b"rotated", "data_crc32c": google_crc32c.value(b"rotated")},
    )
    assert v1.name.endswith("/versions/1") and v2.name.endswith("/versions/2")
    assert v2.client_specified_payload_checksum and not v1.client_specified_payload_checksum
    latest = sm.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.name == v2.name and latest.payload.data == b"rotated"
    assert latest.payload.data_crc32c == google_crc32c.value(b"rotated")
    by_id = sm.access_secret_version(
        name=f"projects/{PROJECT}/secrets/{secret.name.split('/')[-1]}/versions/1"
    )
    assert by_id.payload.data == b"s3cr3t"
    assert [v.name for v in sm.list_secret_versions(parent=secret.name)] == [v2.name, v1.name]


def test_disable_enable_destroy(sm):
    secret = make(sm)
    version = sm.add_secret_version(parent=secret.name, payload={"data": b"x"})
    assert (
        sm.disable_secret_version(name=version.name).state
        == secretmanager_v1.SecretVersion.State.DISABLED
    )
    with pytest.raises(exceptions.BadRequest) as info:
        sm.access_secret_version(name=version.name)
    assert "DISABLED" in info.value.message
    assert (
        sm.enable_secret_version(name=version.name).state
        == secretmanager_v1.SecretVersion.State.ENABLED
    )
    destroyed = sm.destroy_secret_version(name=version.name)
    assert (
        destroyed.state == secretmanager_v1.SecretVersion.State.DESTROYED and destroyed.destroy_time
    )
    with pytest.raises(exceptions.BadRequest):
        sm.access_secret_version(name=version.name)


def test_errors_match_google(sm):
    name = unique("dup")
    secret = make(sm, name)
    with pytest.raises(exceptions.Conflict) as info:
        make(sm, name)
    assert info.value.message.endswith(f": Secret [{secret.name}] already exists.")
    with pytest.raises(exceptions.BadRequest) as info:
        make(sm, "not valid!")
    assert "is not in a valid format" in info.value.message
    with pytest.raises(exceptions.NotFound):
        sm.get_secret(name=f"projects/{PROJECT}/secrets/{unique('missing')}")
    with pytest.raises(exceptions.NotFound):
        sm.access_secret_version(name=f"{secret.name}/versions/latest")
    with pytest.raises(exceptions.BadRequest) as info:
        sm.add_secret_version(parent=secret.name, payload={"data": b"x", "data_crc32c": 1})
    assert "Checksum" in info.value.message
    with pytest.raises(exceptions.BadRequest):
        sm.add_secret_version(parent=secret.name, payload={"data": b"x" * (64 * 1024 + 1)})


def test_unknown_field_is_rejected_as_google_does():
    status, body = call(
        f"/v1/projects/{PROJECT}/secrets?secretId={unique('k')}",
        {"replication": {"automatic": {}}, "colour": "blue"},
    )
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'secret': Cannot find field."
    )
    status, body = call(f"/v1/projects/{PROJECT}/secrets:frobnicate", {})
    assert status == 501 and "POST" in body["error"]["message"]
