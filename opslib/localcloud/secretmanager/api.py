"""Secret Manager v1: the routes for secrets, their versions, payloads and version states.

Each handler parses the call, asks the backend and answers the wire shape; a body field the
API does not know is a 400 (`schema.check`).
"""

from __future__ import annotations

import uuid
from typing import Any

import google_crc32c

from opslib.localcloud import schema
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import already_exists, failed_precondition, invalid
from opslib.localcloud.router import Call, Handler, Router
from opslib.localcloud.secretmanager.backend import (
    ADD_SCHEMA,
    MAX_PAYLOAD,
    SECRET_ID,
    SECRET_SCHEMA,
    SecretManager,
    public,
)


def register(router: Router, cloud: Cloud) -> SecretManager:
    """The backend, with its routes: secrets, their versions, payloads, then state changes."""
    sm = SecretManager(cloud)
    base = "/v1/projects/{project}/secrets"
    _secrets(router, sm, base)
    _secret_edits(router, sm, base)
    _versions(router, sm, base)
    _access(router, sm, base)
    _transitions(router, sm, base)
    return sm


def _secrets(router: Router, sm: SecretManager, base: str) -> None:
    """Create, list and get secrets."""
    cloud = sm.cloud

    async def create(call: Call) -> dict[str, Any]:
        body = schema.check(await call.json(), SECRET_SCHEMA, "secret")
        secret_id = call.query.get("secretId", "")
        name = sm.name(call.params["project"], secret_id)
        if not SECRET_ID.match(secret_id):
            raise invalid(f"Resource ID [{name}] is not in a valid format.", "secret_id")
        if not body.get("replication"):
            raise invalid(
                "Secret.replication must be provided for a global secret.", "secret.replication"
            )
        if name in sm.data["secrets"]:
            raise already_exists(f"Secret [{name}] already exists.")
        secret = {
            **{k: v for k, v in body.items() if k not in ("name", "createTime", "etag")},
            "name": name,
            "createTime": rfc3339(cloud.clock.now()),
            "etag": f'"{uuid.uuid4().hex[:13]}"',
        }
        sm.data["secrets"][name] = secret
        sm.save()
        return secret

    async def list_secrets(call: Call) -> dict[str, Any]:
        prefix = f"projects/{cloud.project_number(call.params['project'])}/secrets/"
        items = [s for n, s in sorted(sm.data["secrets"].items()) if n.startswith(prefix)]
        chunk, token = schema.page(items, call.query, 25000, 25000)
        return {
            "secrets": chunk,
            "totalSize": len(items),
            **({"nextPageToken": token} if token else {}),
        }

    async def get(call: Call) -> dict[str, Any]:
        return sm.secret(call.params["project"], call.params["secret"])

    router.add("POST", base, create)
    router.add("GET", base, list_secrets)
    router.add("GET", base + "/{secret}", get)


def _secret_edits(router: Router, sm: SecretManager, base: str) -> None:
    """Patch (by update mask) and delete a secret."""

    async def patch(call: Call) -> dict[str, Any]:
        secret = sm.secret(call.params["project"], call.params["secret"])
        body = schema.check(await call.json(), SECRET_SCHEMA, "secret")
        mask = [schema.camel(p) for p in call.query.get("updateMask", "").split(",") if p]
        if not mask:
            raise invalid("update_mask is required.", "update_mask")
        for path in mask:
            if path in ("name", "createTime", "replication", "etag"):
                raise invalid(f"{path} cannot be updated.", "update_mask")
            if path in body:
                secret[path] = body[path]
            else:
                secret.pop(path, None)
        secret["etag"] = f'"{uuid.uuid4().hex[:13]}"'
        sm.save()
        return secret

    async def delete(call: Call) -> dict[str, Any]:
        secret = sm.secret(call.params["project"], call.params["secret"])
        del sm.data["secrets"][secret["name"]]
        sm.data["versions"].pop(secret["name"], None)
        sm.save()
        return {}

    router.add("PATCH", base + "/{secret}", patch)
    router.add("DELETE", base + "/{secret}", delete)


def _versions(router: Router, sm: SecretManager, base: str) -> None:
    """Add, list and get a secret's versions (without their payloads)."""
    cloud = sm.cloud

    async def add_version(call: Call) -> dict[str, Any]:
        secret = sm.secret(call.params["project"], call.params["secret"])
        body = schema.check(await call.json(), ADD_SCHEMA, "")
        payload = body.get("payload") or {}
        data = schema.b64decode(payload.get("data", ""), "payload.data")
        if len(data) > MAX_PAYLOAD:
            raise invalid(
                f"Secret payload is {len(data)} bytes; the maximum is 65536.", "payload.data"
            )
        given = payload.get("dataCrc32c")
        if given is not None and int(given) != google_crc32c.value(data):
            raise invalid(
                "Checksum mismatch: the payload does not match data_crc32c.", "payload.data_crc32c"
            )
        versions = sm.versions(call.params["project"], call.params["secret"])
        entry = {
            "name": f"{secret['name']}/versions/{len(versions) + 1}",
            "createTime": rfc3339(cloud.clock.now()),
            "state": "ENABLED",
            "replicationStatus": {"automatic": {}},
            "etag": f'"{uuid.uuid4().hex[:13]}"',
            "clientSpecifiedPayloadChecksum": given is not None,
            "payload": schema.b64encode(data),
        }
        versions.append(entry)
        sm.save()
        return public(entry)

    async def list_versions(call: Call) -> dict[str, Any]:
        versions = list(reversed(sm.versions(call.params["project"], call.params["secret"])))
        chunk, token = schema.page([public(v) for v in versions], call.query, 25000, 25000)
        return {
            "versions": chunk,
            "totalSize": len(versions),
            **({"nextPageToken": token} if token else {}),
        }

    async def get_version(call: Call) -> dict[str, Any]:
        p = call.params
        return public(sm.version(p["project"], p["secret"], p["version"]))

    router.add("POST", base + "/{secret}:addVersion", add_version)
    router.add("GET", base + "/{secret}/versions", list_versions)
    router.add("GET", base + "/{secret}/versions/{version}", get_version)


def _access(router: Router, sm: SecretManager, base: str) -> None:
    """A version's payload, with its CRC32C (only while the version is enabled)."""

    async def access(call: Call) -> dict[str, Any]:
        p = call.params
        entry = sm.version(p["project"], p["secret"], p["version"])
        data = sm.access(p["project"], p["secret"], p["version"])
        return {
            "name": entry["name"],
            "payload": {
                "data": schema.b64encode(data),
                "dataCrc32c": str(google_crc32c.value(data)),
            },
        }

    router.add("GET", base + "/{secret}/versions/{version}:access", access)


def _transitions(router: Router, sm: SecretManager, base: str) -> None:
    """Disable, enable and destroy a version: one handler per target state."""
    cloud = sm.cloud

    def transition(target: str) -> Handler:
        async def handler(call: Call) -> dict[str, Any]:
            p = call.params
            entry = sm.version(p["project"], p["secret"], p["version"])
            if entry["state"] == "DESTROYED":
                raise failed_precondition(
                    f"Secret Version [{entry['name']}] is in DESTROYED state."
                )
            entry["state"] = target
            if target == "DESTROYED":
                entry["payload"] = ""
                entry["destroyTime"] = rfc3339(cloud.clock.now())
            entry["etag"] = f'"{uuid.uuid4().hex[:13]}"'
            sm.save()
            return public(entry)

        return handler

    router.add("POST", base + "/{secret}/versions/{version}:disable", transition("DISABLED"))
    router.add("POST", base + "/{secret}/versions/{version}:enable", transition("ENABLED"))
    router.add("POST", base + "/{secret}/versions/{version}:destroy", transition("DESTROYED"))
