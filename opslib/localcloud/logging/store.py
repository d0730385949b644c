"""Cloud Logging's store: every entry localcloud writes or is sent, sorted and kept on disk.

Entries are kept in the wire shape Google returns (LogEntry JSON: camelCase, int64 as strings,
the LOG_ID URL-encoded in logName) with a `_ts` sort key, and appended as JSON lines to
`logs.jsonl`, so a restart reads them back. Run, Scheduler and Cloud Build write through
`write`, which is the `LogWriter` interface of `opslib.localcloud.cloud`.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from opslib.localcloud import schema
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import invalid
from opslib.localcloud.logging.filter import FilterError, compile_filter, timestamp_nanos

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
        self.write_failed = False
        self.watchers: list[Callable[[dict[str, Any]], None]] = []

    def matcher(self, filter_text: str) -> Callable[[dict[str, Any]], bool]:
        """A filter compiled once (INVALID_ARGUMENT naming the problem if it cannot be read)."""
        try:
            return compile_filter(filter_text)
        except FilterError as exc:
            raise invalid(str(exc), "filter") from None

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
        try:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        except OSError:  # a full buffer met a full disk: kept in memory, said once (`flush`)
            self.flush()
        self._insert(entry, nanos)
        for watch in self.watchers:
            watch(entry)
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
        self.flush()
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
        """Push buffered entries to the state file (the server does this every second).

        On a full disk the entries stay served from memory and the file keeps whole lines up to
        the last good flush (a cut line is skipped when the next start reads it back)."""
        try:
            self._file.flush()
        except OSError as exc:
            if not self.write_failed:
                print(f"localcloud: cannot write {self.path}: {exc.strerror}", flush=True)
            self.write_failed = True
        else:
            self.write_failed = False


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
