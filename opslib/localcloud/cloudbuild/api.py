"""Cloud Build v1: the routes for builds (global or in a location) and their operations.

A build needs its source object in Cloud Storage (read through `cloud.objects`) and image
names on Artifact Registry or gcr.io; it runs in the background while clients poll.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.cloudbuild import imagebuild as imagebuild
from opslib.localcloud.cloudbuild.backend import CloudBuild
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.router import Call, Router


def register(router: Router, cloud: Cloud) -> CloudBuild:
    """The backend, with its routes: builds (global or in a location), then operations."""
    cb = CloudBuild(cloud)
    _builds(router, cb)
    _operations(router, cb)
    return cb


def _builds(router: Router, cb: CloudBuild) -> None:
    """Create, get, list and cancel builds, under a project and under its locations."""
    cloud = cb.cloud

    async def create(call: Call) -> dict[str, Any]:
        project = call.params["project"]
        body = await call.json()
        source = (body.get("source") or {}).get("storageSource") or {}
        if not source.get("bucket") or not source.get("object"):
            raise invalid(
                "Build source must be a Cloud Storage object (source.storageSource).",
                "build.source",
            )
        cloud.objects.object(source["bucket"], source["object"])
        for tag in body.get("images", []):
            if "pkg.dev/" not in tag and "gcr.io/" not in tag:
                raise invalid(
                    f"invalid image name {tag!r}: use REGION-docker.pkg.dev/PROJECT/REPO/IMAGE",
                    "build.images",
                )
        build_id, location = str(uuid.uuid4()), call.params.get("location", "global")
        build = {
            **body,
            "id": build_id,
            "projectId": project,
            "status": "QUEUED",
            "createTime": rfc3339(cloud.clock.now()),
            "timeout": body.get("timeout", "3600s"),
            "logUrl": f"{cloud.base_url}/_localcloud/builds/{build_id}",
            "name": f"projects/{project}/locations/{location}/builds/{build_id}",
        }
        cb.data["builds"][build_id] = build
        cb.save()
        task = asyncio.create_task(cb.execute(build))
        cb.tasks.add(task)
        task.add_done_callback(cb.tasks.discard)
        return cb.operation(build)

    async def get(call: Call) -> dict[str, Any]:
        return cb.build(call.params["build"])

    async def list_builds(call: Call) -> dict[str, Any]:
        project = call.params["project"]
        builds = [b for b in cb.data["builds"].values() if b["projectId"] == project]
        return {"builds": sorted(builds, key=lambda b: b["createTime"], reverse=True)}

    async def cancel(call: Call) -> dict[str, Any]:
        build = cb.build(call.params["build"])
        if build["status"] in ("QUEUED", "WORKING"):
            raise ApiError("FAILED_PRECONDITION", "localcloud cannot cancel a running build.")
        return build

    for prefix in ("/v1/projects/{project}", "/v1/projects/{project}/locations/{location}"):
        router.add("POST", prefix + "/builds", create)
        router.add("GET", prefix + "/builds", list_builds)
        router.add("GET", prefix + "/builds/{build}", get)
        router.add("POST", prefix + "/builds/{build}:cancel", cancel)


def _operations(router: Router, cb: CloudBuild) -> None:
    """A build's long-running operation, by the name create answered with."""

    async def get_operation(call: Call) -> dict[str, Any]:
        name = call.params["name"]
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "build":
            raise ApiError("NOT_FOUND", f"Operation operations/{name} not found.")
        build_id = base64.b64decode(parts[2] + "==").decode()
        return cb.operation(cb.build(build_id))

    router.add("GET", "/v1/operations/{name*}", get_operation)
