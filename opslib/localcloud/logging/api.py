"""Cloud Logging v2: the routes `entries:write` and `entries:list` over the log store.

Everything localcloud runs writes to the store (Cloud Run stdout/stderr and request logs,
Scheduler executions, builds), and clients read it back through entries:list with the
documented filter language (`filter`). A body field the API does not know is a 400.
"""

from __future__ import annotations

import base64
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.logging.store import LogStore
from opslib.localcloud.router import Call, Router

ENTRY_SCHEMA = {
    "logName": schema.SCALAR,
    "resource": schema.ANY,
    "protoPayload": schema.ANY,
    "textPayload": schema.SCALAR,
    "jsonPayload": schema.ANY,
    "timestamp": schema.SCALAR,
    "receiveTimestamp": schema.SCALAR,
    "severity": schema.SCALAR,
    "insertId": schema.SCALAR,
    "httpRequest": schema.ANY,
    "labels": schema.ANY,
    "operation": schema.ANY,
    "trace": schema.SCALAR,
    "spanId": schema.SCALAR,
    "traceSampled": schema.SCALAR,
    "sourceLocation": schema.ANY,
    "split": schema.ANY,
    "errorGroups": schema.ANY,
    "apphub": schema.ANY,
    "apphubDestination": schema.ANY,
}
WRITE_SCHEMA = {
    "logName": schema.SCALAR,
    "resource": schema.ANY,
    "labels": schema.ANY,
    "entries": [ENTRY_SCHEMA],
    "partialSuccess": schema.SCALAR,
    "dryRun": schema.SCALAR,
}
LIST_SCHEMA = {
    "resourceNames": schema.ANY,
    "projectIds": schema.ANY,
    "filter": schema.SCALAR,
    "orderBy": schema.SCALAR,
    "pageSize": schema.SCALAR,
    "pageToken": schema.SCALAR,
}


def public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "_ts"}


def _projects(cloud: Cloud, names: list[str]) -> list[str]:
    projects = []
    for name in names:
        parts = name.split("/")
        if len(parts) < 2 or parts[0] != "projects":
            raise invalid(
                f"Invalid resource name: {name!r}; localcloud reads projects/PROJECT_ID",
                "resource_names",
            )
        projects.append(cloud.project_id(parts[1]))
    return projects


def register(router: Router, cloud: Cloud) -> LogStore:
    store = LogStore(cloud)

    async def write(call: Call) -> dict[str, Any]:
        body = schema.check(await call.json(), WRITE_SCHEMA)
        entries = body.get("entries") or []
        if not entries:
            raise invalid("At least one log entry is required.", "entries")
        for given in entries:
            entry = {
                "logName": given.get("logName") or body.get("logName"),
                "resource": given.get("resource") or body.get("resource") or {"type": "global"},
                **{k: v for k, v in given.items() if k not in ("logName", "resource")},
            }
            if not entry["logName"]:
                raise invalid("Log name is required.", "log_name")
            if body.get("labels"):
                entry["labels"] = {**body["labels"], **entry.get("labels", {})}
            if not body.get("dryRun"):
                store.write(entry)
        return {}

    async def list_entries(call: Call) -> dict[str, Any]:
        body = schema.check(await call.json(), LIST_SCHEMA)
        names = list(body.get("resourceNames") or []) + [
            f"projects/{p}" for p in body.get("projectIds") or []
        ]
        if not names:
            raise invalid("resource_names is required.", "resource_names")
        order = (body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise invalid(
                f'Invalid orderBy "{body.get("orderBy")}"; use "timestamp asc" or '
                '"timestamp desc".',
                "order_by",
            )
        size = body.get("pageSize") or 50
        if isinstance(size, str) and size.lstrip("-").isdigit():
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool):
            raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), {size!r}", "page_size")
        if size < 0 or size > 1000:
            raise invalid(f"page_size must be between 0 and 1000, got {size}.", "page_size")
        chunk, resume = store.page(
            _projects(cloud, names),
            body.get("filter") or "",
            order.endswith("desc"),
            _offset(body.get("pageToken")),
            size or 50,
        )
        answer: dict[str, Any] = {"entries": [public(e) for e in chunk]}
        if resume is not None:
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(resume).encode()).decode()
        return answer

    router.add("POST", "/v2/entries:write", write)
    router.add("POST", "/v2/entries:list", list_entries)
    return store


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", "Invalid page token.") from None
