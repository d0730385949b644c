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
from pathlib import Path
from typing import Any

from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud, RunnableImage
from opslib.localcloud.cloudbuild import imagebuild as imagebuild
from opslib.localcloud.errors import ApiError

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
        self._recover()

    def _recover(self) -> None:
        """After a crash: a build that was queued or working ended with it (INTERNAL_ERROR, as
        Cloud Build reports a build its own failure stopped); its image was never pushed."""
        for build in self.data["builds"].values():
            if build["status"] in ("QUEUED", "WORKING", "PENDING"):
                build["status"] = "INTERNAL_ERROR"
                build["statusDetail"] = "localcloud stopped while the build ran; submit it again"
                build["finishTime"] = rfc3339(self.cloud.clock.now())
        self.save()

    def resolve_image(self, image: str) -> str | None:
        """The digest an image reference (tag or @sha256) points at, if localcloud built it."""
        if "@sha256:" in image:
            digest = "sha256:" + image.split("@sha256:")[1]
            return digest if (self.images / digest.split(":")[1]).exists() else None
        name = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
        return self.data["tags"].get(name)

    def runnable(self, digest: str) -> RunnableImage:
        """An image this registry holds, as Cloud Run starts it."""
        image = imagebuild.load(self.images, digest)
        bin_dir = self.images / "envs" / image.pyenv / "bin"
        return RunnableImage(
            image.digest, image.root, image.workdir, image.env, image.entrypoint, image.cmd, bin_dir
        )

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
        data = self.cloud.objects.read(source["bucket"], source["object"])
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
