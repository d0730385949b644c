"""Secret Manager v1: secrets and their versions, as the Python client and gcloud use them.

Names come back with the project NUMBER, as Google returns them. Payloads are checked against
`dataCrc32c` (CRC32C) when given, and `clientSpecifiedPayloadChecksum` is echoed, which
`gcloud secrets versions add` requires. Values are kept in the state directory (mode 0600).
"""

from __future__ import annotations

import re
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, failed_precondition

SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
MAX_PAYLOAD = 64 * 1024
SECRET_SCHEMA = {
    "name": schema.SCALAR,
    "replication": schema.ANY,
    "createTime": schema.SCALAR,
    "labels": schema.ANY,
    "topics": schema.ANY,
    "expireTime": schema.SCALAR,
    "ttl": schema.SCALAR,
    "etag": schema.SCALAR,
    "rotation": schema.ANY,
    "versionAliases": schema.ANY,
    "annotations": schema.ANY,
    "versionDestroyTtl": schema.SCALAR,
    "customerManagedEncryption": schema.ANY,
    "tags": schema.ANY,
}
ADD_SCHEMA = {
    "payload": {"data": schema.SCALAR, "dataCrc32c": schema.SCALAR},
    "parent": schema.SCALAR,
}
STATES = {1: "ENABLED", 2: "DISABLED", 3: "DESTROYED"}


class SecretManager(CollectionBackend):
    """The backend: secrets keyed by full name (with the project number)."""

    COLLECTION = "secretmanager"
    MAPS = ("secrets", "versions")

    def __init__(self, cloud: Cloud) -> None:
        super().__init__(cloud)
        self.save()  # the file holds payloads: mode 0600 from the start

    def save(self) -> None:
        """Write the collection, readable by this user only (it holds the payloads)."""
        super().save()
        (self.cloud.store.root / f"{self.COLLECTION}.json").chmod(0o600)

    def name(self, project: str, secret: str) -> str:
        return f"projects/{self.cloud.project_number(project)}/secrets/{secret}"

    def secret(self, project: str, secret: str) -> dict[str, Any]:
        name = self.name(project, secret)
        if name not in self.data["secrets"]:
            raise ApiError("NOT_FOUND", f"Secret [{name}] not found.")
        return self.data["secrets"][name]

    def versions(self, project: str, secret: str) -> list[dict[str, Any]]:
        self.secret(project, secret)
        return self.data["versions"].setdefault(self.name(project, secret), [])

    def version(self, project: str, secret: str, version: str) -> dict[str, Any]:
        versions = self.versions(project, secret)
        name = f"{self.name(project, secret)}/versions/{version}"
        if version == "latest":
            if not versions:
                raise ApiError("NOT_FOUND", f"Secret Version [{name}] not found.")
            return versions[-1]
        for entry in versions:
            if entry["name"].endswith(f"/versions/{version}"):
                return entry
        raise ApiError("NOT_FOUND", f"Secret Version [{name}] not found.")

    def access(self, project: str, secret: str, version: str) -> bytes:
        """The payload, for Cloud Run instances as well as the API."""
        entry = self.version(project, secret, version)
        if entry["state"] != "ENABLED":
            raise failed_precondition(
                f"Secret Version [{entry['name']}] is in {entry['state']} state."
            )
        return schema.b64decode(entry["payload"], "payload.data")


def public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "payload"}
