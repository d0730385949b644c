"""Cloud Logging v2: entries:write and entries:list over an append-only log store.

Everything localcloud runs writes here (Cloud Run stdout/stderr and request logs, Scheduler
executions, builds), and clients read it back through entries:list with the documented
filter language (opslib.localcloud.logfilter). Entries persist as JSON lines.
"""

from __future__ import annotations

import base64
import bisect
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from opslib.localcloud import schema
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.logfilter import FilterError, compile_filter, timestamp_nanos
from opslib.localcloud.router import Call, Router

SEVERITIES = {
    0: "DEFAULT",
    100: "DEBUG",
    200: "INFO",
    300: "NOTICE",
    400: "WARNING",
    500: "ERROR",
    600: "CRITICAL",
    700: "ALERT",
    800: "EMERGENCY",
}
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


class LogStore:
    """Entries sorted by (timestamp, insertId); each kept with its `_ts` sort key."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.path: Path = cloud.store.root / "logs.jsonl"
        self.keys: list[tuple[int, str]] = []
        self.entries: list[dict[str, Any]] = []
        if self.path.exists():
            with self.path.open() as handle:
                for line in handle:
                    try:
                        self._insert(json.loads(line))
                    except (ValueError, KeyError, FilterError):
                        continue  # a torn or foreign line must not keep localcloud from starting
        self._file = self.path.open("a")

    def _insert(self, entry: dict[str, Any], nanos: int | None = None) -> None:
        entry["_ts"] = timestamp_nanos(entry["timestamp"]) if nanos is None else nanos
        key = (entry["_ts"], entry["insertId"])
        if not self.keys or key >= self.keys[-1]:
            self.keys.append(key)
            self.entries.append(entry)
        else:
            at = bisect.bisect_right(self.keys, key)
            self.keys.insert(at, key)
            self.entries.insert(at, entry)

    def write(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Store one entry (filling timestamps, insertId and severity as Google does)."""
        now = rfc3339(self.cloud.clock.now())
        entry.setdefault("timestamp", now)
        try:
            nanos = timestamp_nanos(entry["timestamp"])
        except FilterError:
            raise invalid(
                f"Invalid timestamp {entry['timestamp']!r}: use RFC 3339.", "entries.timestamp"
            ) from None
        entry["logName"] = _encoded_log_name(entry["logName"])
        if isinstance(entry.get("httpRequest"), dict):
            entry["httpRequest"] = _http_request(entry["httpRequest"])
        entry["receiveTimestamp"] = now
        entry.setdefault("insertId", uuid.uuid4().hex[:20])
        severity = entry.get("severity", "DEFAULT")
        entry["severity"] = (
            SEVERITIES.get(severity, "DEFAULT") if isinstance(severity, int) else severity
        )
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._insert(entry, nanos)
        return entry

    def page(
        self, projects: list[str], filter_text: str, descending: bool, start: int, size: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `size` matches scanning from position `start`; and where the next page starts.

        Paging resumes where the last page stopped scanning, so reading N entries in pages costs
        one pass over the store, not one pass per page.
        """
        try:
            match = compile_filter(filter_text)
        except FilterError as exc:
            raise invalid(str(exc), "filter") from None
        self._file.flush()
        prefixes = tuple(f"projects/{p}/" for p in projects)
        entries, found = self.entries, []
        total = len(entries)
        position = start
        while position < total:
            entry = entries[total - 1 - position] if descending else entries[position]
            position += 1
            if entry["logName"].startswith(prefixes) and match(entry):
                found.append(entry)
                if len(found) == size:
                    break
        more = position < total and len(found) == size
        return found, (position if more else None)

    def reset(self) -> None:
        self.keys.clear()
        self.entries.clear()
        self._file.close()
        self.path.write_text("")
        self._file = self.path.open("a")

    def close(self) -> None:
        self._file.close()

    def flush(self) -> None:
        """Push buffered entries to the state file (the server does this every second)."""
        self._file.flush()


INT64_FIELDS = ("requestSize", "responseSize", "cacheFillBytes")


def _http_request(given: dict[str, Any]) -> dict[str, Any]:
    """HttpRequest as Google returns it: camelCase, int64 sizes as strings, status an int."""
    out = {(schema.camel(k) if "_" in k else k): v for k, v in given.items()}
    for key in INT64_FIELDS:
        if key in out:
            out[key] = str(out[key])
    if "status" in out:
        try:
            out["status"] = int(out["status"])
        except (TypeError, ValueError):
            raise invalid(
                f"Invalid httpRequest.status {out['status']!r}.", "entries.http_request.status"
            ) from None
    return out


def _encoded_log_name(name: str) -> str:
    """projects/P/logs/LOG_ID with the LOG_ID URL-encoded, as Google stores it."""
    head, sep, log_id = name.partition("/logs/")
    if not sep or "%" in log_id:
        return name
    return f"{head}/logs/{quote(log_id, safe='')}"


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
    cloud.logs = store
    return store


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", "Invalid page token.") from None
