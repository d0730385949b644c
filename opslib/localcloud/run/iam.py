"""A resource's IAM policy methods: `:getIamPolicy`, `:setIamPolicy`, `:testIamPermissions`.

Cloud Run services and jobs serve these three the same way (the policy kept on the resource
as `_iam`, a stale `etag` refused with 409 ABORTED, every requested `run.*` permission granted),
so services_api and jobs_api register them from here instead of each keeping its own copy.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

from opslib.localcloud.errors import ApiError
from opslib.localcloud.router import Call, Router

Lookup = Callable[[Call], dict[str, Any]]


def routes(router: Router, path: str, resource: Lookup, save: Callable[[], None]) -> None:
    """Serve the policy methods on `path`; `resource` finds the call's resource or raises."""

    async def get_iam(call: Call) -> dict[str, Any]:
        return resource(call)["_iam"]

    async def set_iam(call: Call) -> dict[str, Any]:
        found = resource(call)
        policy = (await call.json()).get("policy") or {}
        if policy.get("etag") and policy["etag"] != found["_iam"]["etag"]:
            raise ApiError(
                "ABORTED",
                "There were concurrent policy changes. Please retry the whole read-modify-write "
                "with exponential backoff.",
            )
        found["_iam"] = {
            "version": policy.get("version", 1),
            "bindings": policy.get("bindings", []),
            "etag": base64.b64encode(uuid.uuid4().bytes[:8]).decode(),
        }
        save()
        return found["_iam"]

    async def test_iam(call: Call) -> dict[str, Any]:
        resource(call)
        wanted = (await call.json()).get("permissions", [])
        return {"permissions": [p for p in wanted if p.startswith("run.")]}

    router.add("GET", path + ":getIamPolicy", get_iam)
    router.add("POST", path + ":setIamPolicy", set_iam)
    router.add("POST", path + ":testIamPermissions", test_iam)
