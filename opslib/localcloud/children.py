"""The processes a localcloud starts (service instances, job tasks), recorded in its state dir.

A server killed with SIGKILL cannot stop its children: gunicorn instances in their own sessions
keep running and keep their ports. Each child is recorded here as it starts, with its start time
from /proc (a pid alone may have been reused since), and forgotten when it stops; the next start
on this state, and `opslib localcloud stop`, stop what the record still names
(`stop_leftovers`). Never by process name: another localcloud's children look the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path

RECORD = "children.json"


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # the fields after the command name


class Children:
    """The record of one state directory's running children."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / RECORD

    def read(self) -> dict[str, dict[str, str]]:
        try:
            entries = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def add(self, pid: int, what: str) -> None:
        """Record a child that was just started (`what` names it in messages)."""
        entries = self.read()
        entries[str(pid)] = {"start": start_time(pid) or "", "what": what}
        self._write(entries)

    def remove(self, pid: int) -> None:
        entries = self.read()
        if entries.pop(str(pid), None) is not None:
            self._write(entries)

    def clear(self) -> None:
        if self.path.exists():
            self._write({})

    def _write(self, entries: dict[str, dict[str, str]]) -> None:
        """Atomically: a crash mid-write leaves the last whole record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".children.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(entries, handle)
        os.replace(tmp, self.path)


def stop_leftovers(state_dir: Path, grace: float = 10.0) -> list[str]:
    """Stop every recorded child of a server that is gone (SIGTERM to its process group, SIGKILL
    after `grace` s, as Cloud Run stops an instance); what was stopped. Call it only when no
    server runs on `state_dir`: a live server's children are its own to stop."""
    children = Children(state_dir)
    stopped, groups = [], []
    for pid_text, entry in children.read().items():
        pid = int(pid_text)
        now = start_time(pid)
        if now is not None and now != entry.get("start"):
            continue  # the pid was reused by another process: not ours
        # The leader may have exited while its group (gunicorn's workers) lives on.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            groups.append(pid)
            stopped.append(entry.get("what") or f"pid {pid}")
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = [pid for pid in groups if _group_alive(pid)]
        time.sleep(0.05)
    for pid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    children.clear()
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
