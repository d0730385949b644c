"""Cloud Build v1: builds from a Cloud Storage source, as long-running operations.

A build unpacks its `storageSource` tarball, carries out `docker build` steps with
imagebuild (no Docker needed), records each built tag -> digest in the registry that Cloud
Run deploys from, and writes its log lines to Logging (`projects/P/logs/cloudbuild`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from opslib.localcloud import imagebuild
from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.router import Call, Router

DOCKER = ("gcr.io/cloud-builders/docker", "docker", "gcr.io/cloud-builders/docker:latest")
TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1."


class CloudBuild(CollectionBackend):
    """Builds keyed by id; the registry of built images (tag -> digest) lives here too."""

    COLLECTION = "cloudbuild"
    MAPS = ("builds", "tags")

    def __init__(self, cloud: Cloud) -> None:
        super().__init__(cloud)
        self.images: Path = cloud.store.dir("images")
        self.tasks: set[asyncio.Task[None]] = set()

    def resolve_image(self, image: str) -> str | None:
        """The digest an image reference (tag or @sha256) points at, if localcloud built it."""
        if "@sha256:" in image:
            digest = "sha256:" + image.split("@sha256:")[1]
            return digest if (self.images / digest.split(":")[1]).exists() else None
        name = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
        return self.data["tags"].get(name)

    def build(self, build_id: str) -> dict[str, Any]:
        if build_id not in self.data["builds"]:
            raise ApiError("NOT_FOUND", f'Build "{build_id}" not found.')
        return self.data["builds"][build_id]

    def operation(self, build: dict[str, Any]) -> dict[str, Any]:
        op_id = base64.b64encode(build["id"].encode()).decode()
        op: dict[str, Any] = {
            "name": f"operations/build/{build['projectId']}/{op_id}",
            "metadata": {"@type": TYPE + "BuildOperationMetadata", "build": build},
            "done": build["status"] not in ("QUEUED", "WORKING", "PENDING"),
        }
        if op["done"]:
            if build["status"] == "SUCCESS":
                op["response"] = {"@type": TYPE + "Build", **build}
            else:
                op["error"] = {
                    "code": 2,
                    "message": "Build failed; check build logs for details "
                    f"({build.get('statusDetail', build['status'])})",
                }
        return op

    def log(self, build: dict[str, Any], line: str) -> None:
        self.cloud.logs.write(
            {
                "logName": f"projects/{build['projectId']}/logs/cloudbuild",
                "resource": {
                    "type": "build",
                    "labels": {"build_id": build["id"], "project_id": build["projectId"]},
                },
                "textPayload": line,
                "severity": "INFO",
            }
        )

    async def execute(self, build: dict[str, Any]) -> None:
        build["status"], build["startTime"] = "WORKING", rfc3339(self.cloud.clock.now())
        self.save()
        try:
            await asyncio.to_thread(self._execute, build)
            build["status"] = "SUCCESS"
        except imagebuild.BuildFailed as exc:
            build["status"], build["statusDetail"] = "FAILURE", str(exc)
            build["failureInfo"] = {"type": "USER_BUILD_STEP", "detail": str(exc)}
            self.log(build, f"ERROR: {exc}")
        except Exception as exc:
            build["status"], build["statusDetail"] = (
                "INTERNAL_ERROR",
                f"{type(exc).__name__}: {exc}",
            )
            self.log(build, f"ERROR: internal: {exc}")
        build["finishTime"] = rfc3339(self.cloud.clock.now())
        self.log(build, "DONE" if build["status"] == "SUCCESS" else build["status"])
        self.save()

    def _execute(self, build: dict[str, Any]) -> None:
        source = build["source"]["storageSource"]
        data = self.cloud.services["storage"].read(source["bucket"], source["object"])
        built: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="localcloud-build-") as tmp:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                archive.extractall(tmp, filter="data")
            for index, step in enumerate(build.get("steps", [])):
                self.log(build, f"Starting Step #{index}")
                built.update(self._step(build, step, Path(tmp)))
                step["status"] = "SUCCESS"
        results = []
        for tag in build.get("images", []):
            if tag not in built:
                raise imagebuild.BuildFailed(f"failed to push {tag}: no step built that image")
            self.data["tags"][tag] = built[tag]
            results.append({"name": tag, "digest": built[tag]})
            self.log(build, f"PUSH {tag}: digest: {built[tag]}")
        build["results"] = {"images": results}

    def _step(self, build: dict[str, Any], step: dict[str, Any], workspace: Path) -> dict[str, str]:
        name, args = step.get("name", ""), list(step.get("args", []))
        if name not in DOCKER or not args or args[0] != "build":
            raise imagebuild.BuildFailed(
                f"step {name} {' '.join(args)}: localcloud runs only `docker build` steps"
            )
        tags, dockerfile, rest = [], "Dockerfile", iter(args[1:])
        context = "."
        for arg in rest:
            if arg in ("-t", "--tag"):
                tags.append(next(rest, ""))
            elif arg in ("-f", "--file"):
                dockerfile = next(rest, "Dockerfile")
            elif arg in ("--network", "--cache-from", "--build-arg", "--platform"):
                next(rest, None)
            elif not arg.startswith("-"):
                context = arg
        folder = workspace / step.get("dir", "") / context
        image = imagebuild.build(
            folder, self.images, lambda line: self.log(build, line), dockerfile
        )
        return {
            tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest": image.digest for tag in tags
        }


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
        cloud.services["storage"].object(source["bucket"], source["object"])
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
