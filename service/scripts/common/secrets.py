"""update_secret: a job rotating its own secret (the seed's helper), without the gRPC client.

It adds a Secret Manager version over REST with the instance's own identity, taken from the
metadata server as on Cloud Run. The image stays small: only `requests`, already needed for
the retry policy. GCE_METADATA_HOST and CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER move both
ends elsewhere (localcloud sets them), as google-auth and gcloud honour them.
"""

from __future__ import annotations

import base64
import os

import requests

API = "https://secretmanager.googleapis.com/"
METADATA = "metadata.google.internal"


def _metadata(path: str) -> requests.Response:
    host = os.environ.get("GCE_METADATA_HOST", METADATA)
    answer = requests.get(
        f"http://{host}/computeMetadata/v1/{path}", headers={"Metadata-Flavor": "Google"}, timeout=5
    )
    answer.raise_for_status()
    return answer


def _token() -> str:
    return _metadata("instance/service-accounts/default/token").json()["access_token"]


def update_secret(secret_id: str, new_value: str, project: str | None = None) -> str:
    """Add `new_value` as the newest version of `secret_id`; returns the version's name."""
    project = (
        project or os.environ.get("GOOGLE_CLOUD_PROJECT") or _metadata("project/project-id").text
    )
    base = os.environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", API).rstrip("/")
    payload = {"payload": {"data": base64.b64encode(new_value.encode("utf-8")).decode()}}
    answer = requests.post(
        f"{base}/v1/projects/{project}/secrets/{secret_id}:addVersion",
        json=payload,
        headers={"Authorization": f"Bearer {_token()}"},
        timeout=10,
    )
    if answer.status_code >= 400:
        # The error names the secret and Google's message, never the value.
        message = answer.json().get("error", {}).get("message", answer.reason)
        raise RuntimeError(f"update_secret({secret_id}) failed: {answer.status_code} {message}")
    return answer.json()["name"]
