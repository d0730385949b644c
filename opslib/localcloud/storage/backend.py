"""Cloud Storage JSON API: the part google-cloud-storage and Cloud Build sources need.

Buckets (insert/get/list/delete) and objects (multipart, media and resumable uploads; get,
list, delete; `alt=media` downloads), with generations, md5Hash and crc32c as Google
returns them. Object bytes live in the state directory.

Request preconditions (`ifGenerationMatch`, `ifGenerationNotMatch`, `ifMetagenerationMatch`,
`ifMetagenerationNotMatch`) are checked as Cloud Storage does, because locks are built on them
(`ifGenerationMatch=0` = create only if absent): a write or delete that fails one answers 412
with Google's `conditionNotMet` error; a read answers 412 for a failed *Match and 304 for a
failed *NotMatch (as googleapis/storage-testbench, testbench/generation.py). The check and the
write run with no await between them, so of two racing writers exactly one wins. Every write
gets a new, strictly increasing generation; responses carry a `Date` header from localcloud's
clock, the server time lease holders compare expiries against.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import google_crc32c

from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
PRECONDITIONS = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
)
CONDITION_NOT_MET = "At least one of the pre-conditions you specified did not hold."


class ConditionNotMet(ApiError):
    """412 in Cloud Storage's JSON error shape (errors[].reason), which clients branch on."""

    def __init__(self) -> None:
        super().__init__("FAILED_PRECONDITION", CONDITION_NOT_MET)

    @property
    def http_status(self) -> int:
        return 412

    def body(self) -> dict[str, Any]:
        detail = {
            "message": CONDITION_NOT_MET,
            "domain": "global",
            "reason": "conditionNotMet",
            "locationType": "header",
            "location": "If-Match",
        }
        return {"error": {"code": 412, "message": CONDITION_NOT_MET, "errors": [detail]}}


def conditions(query: dict[str, str]) -> dict[str, int]:
    """The request's preconditions as integers (Google sends and takes int64 as text)."""
    found: dict[str, int] = {}
    for name in PRECONDITIONS:
        if name in query:
            try:
                found[name] = int(query[name])
            except ValueError:
                raise invalid(f"Invalid value for {name}: {query[name]}", name) from None
    return found


def unmet(obj: dict[str, Any] | None, wanted: dict[str, int]) -> str | None:
    """The first precondition `obj` (None: no live object) does not meet, if any.

    A missing object has generation 0, so ifGenerationMatch=0 means "only if absent"; an
    ifGenerationNotMatch needs a live object (the JSON API reference says so).
    """
    generation = int(obj["generation"]) if obj else 0
    metageneration = int(obj["metageneration"]) if obj else 0
    for name, value in wanted.items():
        failed = {
            "ifGenerationMatch": value != generation,
            "ifGenerationNotMatch": obj is None or value == generation,
            "ifMetagenerationMatch": value != metageneration,
            "ifMetagenerationNotMatch": value == metageneration,
        }[name]
        if failed:
            return name
    return None


class Storage(CollectionBackend):
    """Buckets and object metadata in a collection; bytes in files named by a digest."""

    COLLECTION = "storage"
    MAPS = ("buckets", "objects", "uploads")

    def __init__(self, cloud: Cloud) -> None:
        super().__init__(cloud)
        self.blobs: Path = cloud.store.dir("storage-blobs")
        self.last_generation = 0

    def bucket(self, name: str) -> dict[str, Any]:
        if name not in self.data["buckets"]:
            raise ApiError("NOT_FOUND", "The specified bucket does not exist.")
        return self.data["buckets"][name]

    def object(self, bucket: str, name: str) -> dict[str, Any]:
        self.bucket(bucket)
        key = f"{bucket}/{name}"
        if key not in self.data["objects"]:
            raise ApiError("NOT_FOUND", f"No such object: {bucket}/{name}")
        return self.data["objects"][key]

    def current(self, bucket: str, name: str) -> dict[str, Any] | None:
        """The live object, or None; the bucket must exist."""
        self.bucket(bucket)
        return self.data["objects"].get(f"{bucket}/{name}")

    def live(self, bucket: str, name: str, query: dict[str, str]) -> dict[str, Any]:
        """The object a read or delete names: 404 if absent or not the `generation` asked for."""
        obj = self.object(bucket, name)
        if "generation" in query and query["generation"] != obj["generation"]:
            raise ApiError("NOT_FOUND", f"No such object: {bucket}/{name}")
        return obj

    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        meta: dict[str, Any],
        wanted: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Write unless a precondition fails (412); check and write are one step."""
        if wanted and unmet(self.current(bucket, name), wanted):
            raise ConditionNotMet()
        return self.write(bucket, name, data, meta)

    def next_generation(self) -> str:
        """Microseconds of the clock, but always above the last one handed out."""
        now = int(self.cloud.clock.time() * 1_000_000)
        self.last_generation = max(now, self.last_generation + 1)
        return str(self.last_generation)

    def read(self, bucket: str, name: str) -> bytes:
        """An object's bytes (Cloud Build reads its source through this)."""
        meta = self.object(bucket, name)
        return (self.blobs / meta["_blob"]).read_bytes()

    def write(self, bucket: str, name: str, data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        self.bucket(bucket)
        digest = hashlib.sha256(data).hexdigest()
        blob = self.blobs / digest
        if not blob.exists():  # named by its content: rewriting the same bytes is wasted I/O
            blob.write_bytes(data)
        now = rfc3339(self.cloud.clock.now())
        generation = self.next_generation()
        url = self.cloud.base_url
        obj = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{generation}",
            "selfLink": f"{url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            "mediaLink": f"{url}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
            f"?generation={generation}&alt=media",
            "name": name,
            "bucket": bucket,
            "generation": generation,
            "metageneration": "1",
            "contentType": meta.get("contentType") or "application/octet-stream",
            "storageClass": "STANDARD",
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "crc32c": base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode(),
            "etag": base64.b64encode(digest[:12].encode()).decode(),
            "timeCreated": now,
            "updated": now,
            "timeStorageClassUpdated": now,
            "_blob": digest,
        }
        for key in ("metadata", "cacheControl"):
            if meta.get(key):
                obj[key] = meta[key]
        self.data["objects"][f"{bucket}/{name}"] = obj
        self.save()
        return obj
