"""The seed's update_secret: a job rotating its own secret from inside the running service."""

from __future__ import annotations

import json

import lc
from google.cloud import run_v2, secretmanager_v1
from test_localcloud_run import SA, build, deploy, fetch, grant, image_name, service_folder


def test_a_job_rotates_its_own_secret(tmp_path):
    sm = secretmanager_v1.SecretManagerServiceClient(**lc.client_kwargs())
    secret_id = lc.unique("rotating")
    secret = sm.create_secret(
        parent=f"projects/{lc.PROJECT}",
        secret_id=secret_id,
        secret={"replication": {"automatic": {}}},
    )
    sm.add_secret_version(parent=secret.name, payload={"data": b"old-value"})
    folder = service_folder(tmp_path, "rotate")
    module = folder / "scripts" / "batch" / "rotate.py"
    module.write_text(
        module.read_text().replace(
            "    processed, errors = 0, 0\n",
            "    processed, errors = 0, 0\n"
            "    from scripts.common.secrets import update_secret\n\n"
            f"    update_secret({secret_id!r}, 'new-value-7f3a')\n    processed = 1\n",
            1,
        )
    )
    service_id = lc.unique("rot")
    image = image_name(service_id, "v1")
    build(folder, image)
    run = run_v2.ServicesClient(**lc.client_kwargs())
    service = deploy(run, service_id, image)
    grant(run, service, f"serviceAccount:{SA}")
    status, body = fetch(service.uri + "/run-rotate", lc.token(service.uri, SA), data=b"{}")
    assert status == 200, body
    assert json.loads(body)["result"]["processed"] == 1
    latest = sm.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.payload.data == b"new-value-7f3a" and latest.name.endswith("/versions/2")
    _, listed = lc.call(
        "/v2/entries:list",
        {
            "resourceNames": [f"projects/{lc.PROJECT}"],
            "pageSize": 1000,
            "filter": f'resource.labels.service_name="{service_id}"',
        },
    )
    assert "new-value-7f3a" not in json.dumps(listed), "the new value never reaches the logs"
