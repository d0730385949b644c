"""Cloud Storage JSON API: the part google-cloud-storage and Cloud Build sources need.

Buckets (insert/get/list/delete) and objects (multipart, media and resumable uploads; get,
list, delete; `alt=media` downloads), with generations, md5Hash and crc32c as Google
returns them. Object bytes live in the state directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import quote

import google_crc32c
from aiohttp import web

from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists, invalid
from opslib.localcloud.router import Call, Router

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
COLLECTION = "storage"


class Storage:
    """Buckets and object metadata in a collection; bytes in files named by a digest."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.data = cloud.store.collection(COLLECTION)
        self.init()
        self.blobs: Path = cloud.store.dir("storage-blobs")

    def init(self) -> None:
        for key in ("buckets", "objects", "uploads"):
            self.data.setdefault(key, {})

    def save(self) -> None:
        self.cloud.store.save(COLLECTION)

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

    def read(self, bucket: str, name: str) -> bytes:
        """An object's bytes (Cloud Build reads its source through this)."""
        meta = self.object(bucket, name)
        return (self.blobs / meta["_blob"]).read_bytes()

    def write(self, bucket: str, name: str, data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        self.bucket(bucket)
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        now = rfc3339(self.cloud.clock.now())
        generation = str(int(self.cloud.clock.time() * 1_000_000))
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
        if meta.get("metadata"):
            obj["metadata"] = meta["metadata"]
        self.data["objects"][f"{bucket}/{name}"] = obj
        self.save()
        return obj


def public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _media_response(storage: Storage, bucket: str, name: str) -> web.Response:
    meta = storage.object(bucket, name)
    return web.Response(
        body=storage.read(bucket, name),
        content_type=meta["contentType"].split(";")[0],
        headers={
            "x-goog-generation": meta["generation"],
            "x-goog-hash": f"crc32c={meta['crc32c']},md5={meta['md5Hash']}",
        },
    )


def _multipart(raw: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    parts = [p for p in message.iter_parts()]
    if len(parts) != 2:
        raise invalid("A multipart upload needs a metadata part and a media part.")
    meta = json.loads(parts[0].get_payload(decode=True) or b"{}")
    return meta, parts[1].get_payload(decode=True) or b""


def register(router: Router, cloud: Cloud) -> Storage:
    storage = Storage(cloud)

    async def insert_bucket(call: Call) -> dict[str, Any]:
        body = await call.json()
        name = body.get("name", "")
        if not BUCKET_NAME.match(name) or "google" in name:
            raise invalid(f"Invalid bucket name: '{name}'")
        if name in storage.data["buckets"]:
            raise already_exists(
                "Your previous request to create the named bucket succeeded and you already own it."
            )
        now = rfc3339(cloud.clock.now())
        bucket = {
            "kind": "storage#bucket",
            "id": name,
            "name": name,
            "projectNumber": cloud.project_number(call.query.get("project", ""))
            if call.query.get("project")
            else "0",
            "metageneration": "1",
            "location": body.get("location", "US").upper(),
            "storageClass": body.get("storageClass", "STANDARD"),
            "timeCreated": now,
            "updated": now,
            "etag": "CAE=",
            "selfLink": f"{cloud.base_url}/storage/v1/b/{name}",
        }
        storage.data["buckets"][name] = bucket
        storage.save()
        return bucket

    async def get_bucket(call: Call) -> dict[str, Any]:
        return storage.bucket(call.params["bucket"])

    async def list_buckets(call: Call) -> dict[str, Any]:
        return {"kind": "storage#buckets", "items": list(storage.data["buckets"].values())}

    async def delete_bucket(call: Call) -> web.Response:
        name = call.params["bucket"]
        storage.bucket(name)
        if any(k.startswith(f"{name}/") for k in storage.data["objects"]):
            raise ApiError("ABORTED", "The bucket you tried to delete is not empty.")
        del storage.data["buckets"][name]
        storage.save()
        return web.Response(status=204)

    async def get_object(call: Call) -> Any:
        bucket, name = call.params["bucket"], call.params["object"]
        if call.request.query.get("alt") == "media":
            return _media_response(storage, bucket, name)
        return public(storage.object(bucket, name))

    async def download(call: Call) -> web.Response:
        return _media_response(storage, call.params["bucket"], call.params["object"])

    async def list_objects(call: Call) -> dict[str, Any]:
        bucket = call.params["bucket"]
        storage.bucket(bucket)
        prefix = call.query.get("prefix", "")
        items = [
            public(o)
            for k, o in sorted(storage.data["objects"].items())
            if k.startswith(f"{bucket}/{prefix}")
        ]
        return {"kind": "storage#objects", "items": items}

    async def delete_object(call: Call) -> web.Response:
        obj = storage.object(call.params["bucket"], call.params["object"])
        del storage.data["objects"][f"{obj['bucket']}/{obj['name']}"]
        storage.save()
        return web.Response(status=204)

    async def upload(call: Call) -> Any:
        bucket = call.params["bucket"]
        storage.bucket(bucket)
        kind = call.query.get("uploadType", "media")
        raw = await call.request.read()
        if kind == "multipart":
            meta, data = _multipart(raw, call.request.headers.get("Content-Type", ""))
            name = call.query.get("name") or meta.get("name")
        elif kind == "media":
            meta, data = {"contentType": call.request.headers.get("Content-Type")}, raw
            name = call.query.get("name")
        elif kind == "resumable":
            meta = json.loads(raw or b"{}")
            upload_id = uuid.uuid4().hex
            storage.data["uploads"][upload_id] = {
                "bucket": bucket,
                "name": call.query.get("name") or meta.get("name"),
                "meta": meta,
                "chunks": "",
            }
            location = (
                f"{cloud.base_url}/upload/storage/v1/b/{bucket}/o"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return web.json_response({}, headers={"Location": location})
        else:
            raise invalid(f"Unsupported uploadType {kind!r}")
        if not name:
            raise invalid("Required parameter: name")
        return public(storage.write(bucket, name, data, meta))

    async def resumable_put(call: Call) -> Any:
        upload_id = call.query.get("upload_id", "")
        session = storage.data["uploads"].get(upload_id)
        if session is None:
            raise ApiError("NOT_FOUND", "No such upload session.")
        chunk = await call.request.read()
        parts = session.setdefault("_parts", [])
        parts.append(base64.b64encode(chunk).decode())
        total = call.request.headers.get("Content-Range", "").rsplit("/", 1)[-1]
        data = b"".join(base64.b64decode(p) for p in parts)
        if total == "*" or (total.isdigit() and len(data) < int(total)):
            return web.Response(status=308, headers={"Range": f"bytes=0-{len(data) - 1}"})
        del storage.data["uploads"][upload_id]
        return public(storage.write(session["bucket"], session["name"], data, session["meta"]))

    router.add("POST", "/storage/v1/b", insert_bucket)
    router.add("GET", "/storage/v1/b", list_buckets)
    router.add("GET", "/storage/v1/b/{bucket}", get_bucket)
    router.add("DELETE", "/storage/v1/b/{bucket}", delete_bucket)
    router.add("GET", "/storage/v1/b/{bucket}/o", list_objects)
    router.add("GET", "/storage/v1/b/{bucket}/o/{object*}", get_object)
    router.add("DELETE", "/storage/v1/b/{bucket}/o/{object*}", delete_object)
    router.add("GET", "/download/storage/v1/b/{bucket}/o/{object*}", download)
    router.add("POST", "/upload/storage/v1/b/{bucket}/o", upload)
    router.add("PUT", "/upload/storage/v1/b/{bucket}/o", resumable_put)
    return storage
