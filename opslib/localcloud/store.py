"""State kept in the state directory, so a restart finds every resource where it was.

Each API keeps its resources in named collections (plain JSON-able dicts); a mutation saves
that collection atomically. Log entries are appended to a JSON-lines file instead (logstore).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from opslib.localcloud.errors import ApiError


class Store:
    """Named JSON collections under `root`, loaded at start and saved on every change."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._collections: dict[str, dict[str, Any]] = {}

    def collection(self, name: str) -> dict[str, Any]:
        if name not in self._collections:
            path = self._path(name)
            text = path.read_text() if path.exists() else ""
            self._collections[name] = json.loads(text) if text.strip() else {}
        return self._collections[name]

    def save(self, name: str) -> None:
        data = json.dumps(self._collections.get(name, {}), indent=1, sort_keys=True)
        path = self._path(name)
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk: the file keeps its last whole state
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise ApiError(
                "UNAVAILABLE",
                f"localcloud could not save its state to {path}: {exc.strerror}; "
                "free space there, then send the request again",
            ) from None

    def reset(self, keep: tuple[str, ...] = ()) -> None:
        """Empty every collection in place (backends hold references to them)."""
        for name in list(self._collections):
            if name not in keep:
                self._collections[name].clear()
                self.save(name)

    def dir(self, name: str) -> Path:
        """A folder for blobs (objects, images) that do not belong in JSON."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"
