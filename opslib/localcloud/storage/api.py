"""Cloud Storage JSON API: the routes for buckets, objects, downloads and uploads.

Reads check preconditions as Cloud Storage does (a failed *NotMatch is 304, a failed *Match
412); answers carry a `Date` header on localcloud's clock.
"""

from __future__ import annotations

import base64
import json
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists, invalid
from opslib.localcloud.router import Call, Router
from opslib.localcloud.storage.backend import (
    BUCKET_NAME,
    ConditionNotMet,
    Storage,
    conditions,
    unmet,
)


def public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def server_date(cloud: Cloud) -> dict[str, str]:
    """The Date header on localcloud's clock (aiohttp's own would be real time)."""
    return {"Date": format_datetime(cloud.clock.now(), usegmt=True)}


def answer(cloud: Cloud, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, headers=server_date(cloud))


def _read_check(storage: Storage, obj: dict[str, Any], query: dict[str, str]) -> None:
    """A read's preconditions: a failed *NotMatch is 304 Not Modified, a failed *Match 412."""
    failed = unmet(obj, conditions(query))
    if failed is None:
        return
    if failed.endswith("NotMatch"):
        raise web.HTTPNotModified(headers=server_date(storage.cloud))
    raise ConditionNotMet()


def _media_response(storage: Storage, obj: dict[str, Any]) -> web.Response:
    return web.Response(
        body=(storage.blobs / obj["_blob"]).read_bytes(),
        content_type=obj["contentType"].split(";")[0],
        headers={
            **server_date(storage.cloud),
            "x-goog-generation": obj["generation"],
            "x-goog-metageneration": obj["metageneration"],
            "x-goog-hash": f"crc32c={obj['crc32c']},md5={obj['md5Hash']}",
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
    """The backend, with its routes: buckets, objects, then uploads."""
    storage = Storage(cloud)
    _buckets(router, storage)
    _objects(router, storage)
    _uploads(router, storage)
    return storage


def _buckets(router: Router, storage: Storage) -> None:
    """Insert, get, list and delete buckets."""
    cloud = storage.cloud

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

    router.add("POST", "/storage/v1/b", insert_bucket)
    router.add("GET", "/storage/v1/b", list_buckets)
    router.add("GET", "/storage/v1/b/{bucket}", get_bucket)
    router.add("DELETE", "/storage/v1/b/{bucket}", delete_bucket)


def _objects(router: Router, storage: Storage) -> None:
    """Get (metadata or media), download, list and delete objects."""
    cloud = storage.cloud

    async def get_object(call: Call) -> Any:
        obj = storage.live(call.params["bucket"], call.params["object"], call.query)
        _read_check(storage, obj, call.query)
        if call.request.query.get("alt") == "media":
            return _media_response(storage, obj)
        return answer(cloud, public(obj))

    async def download(call: Call) -> web.Response:
        obj = storage.live(call.params["bucket"], call.params["object"], call.query)
        _read_check(storage, obj, call.query)
        return _media_response(storage, obj)

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
        obj = storage.live(call.params["bucket"], call.params["object"], call.query)
        if unmet(obj, conditions(call.query)):
            raise ConditionNotMet()
        del storage.data["objects"][f"{obj['bucket']}/{obj['name']}"]
        storage.save()
        return web.Response(status=204, headers=server_date(cloud))

    router.add("GET", "/storage/v1/b/{bucket}/o", list_objects)
    router.add("GET", "/storage/v1/b/{bucket}/o/{object*}", get_object)
    router.add("DELETE", "/storage/v1/b/{bucket}/o/{object*}", delete_object)
    router.add("GET", "/download/storage/v1/b/{bucket}/o/{object*}", download)


def _uploads(router: Router, storage: Storage) -> None:
    """Media, multipart and resumable uploads; a resumable one completes with PUTs."""
    cloud = storage.cloud

    async def upload(call: Call) -> Any:
        bucket = call.params["bucket"]
        storage.bucket(bucket)
        kind = call.query.get("uploadType", "media")
        wanted = conditions(call.query)
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
                "conditions": wanted,
            }
            location = (
                f"{cloud.base_url}/upload/storage/v1/b/{bucket}/o"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return web.json_response({}, headers={"Location": location, **server_date(cloud)})
        else:
            raise invalid(f"Unsupported uploadType {kind!r}")
        if not name:
            raise invalid("Required parameter: name")
        return answer(cloud, public(storage.put(bucket, name, data, meta, wanted)))

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
        # Preconditions given when the upload started are checked when it completes.
        wanted = session.get("conditions") or {}
        obj = storage.put(session["bucket"], session["name"], data, session["meta"], wanted)
        return answer(cloud, public(obj))

    router.add("POST", "/upload/storage/v1/b/{bucket}/o", upload)
    router.add("PUT", "/upload/storage/v1/b/{bucket}/o", resumable_put)
