"""Cloud Build: upload the packed service folder and build its image (what step 3 ships)."""

from __future__ import annotations

import contextlib
import time
import uuid

from google.api_core import exceptions

from opslib.cloud.clients import Clients
from opslib.cloud.errors import google_errors
from opslib.core.progress import wait
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps.deploy.source import Source

BUILDER = "gcr.io/cloud-builders/docker"


def build(spec: Spec, clients: Clients, source: Source, image: str, progress: bool) -> None:
    """Upload the source to the build bucket, then build and push `image`, waiting for it."""
    bucket_name = names.build_bucket(spec.project)
    with google_errors(f"upload of {spec.service}'s source", "storage"):
        bucket = clients.storage.bucket(bucket_name)
        if not bucket.exists():
            # Another deploy of this project may create it between the two calls: it exists.
            with contextlib.suppress(exceptions.Conflict):
                clients.storage.create_bucket(bucket_name)
        obj = f"source/{time.time():.6f}-{uuid.uuid4().hex}.tgz"
        bucket.blob(obj).upload_from_string(source.data, content_type="application/gzip")
    fix = "read the build log above; fix the Dockerfile or requirements.txt"
    with google_errors(f"build of {image}", "cloudbuild", fix):
        operation = clients.build.create_build(
            project_id=spec.project,
            build={
                "source": {"storage_source": {"bucket": bucket_name, "object_": obj}},
                "steps": [{"name": BUILDER, "args": ["build", "-t", image, "."]}],
                "images": [image],
            },
        )
        wait(operation, f"build {spec.service}", progress)
