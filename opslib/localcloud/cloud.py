"""The shared context every emulated API works in: state, clock, logs, projects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opslib.localcloud.clock import Clock
from opslib.localcloud.store import Store


@dataclass
class Cloud:
    """localcloud's state for one server process."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    clock: Clock = field(default_factory=Clock)
    store: Store = field(init=False)
    logs: Any = None  # LogStore, set by the server
    services: dict[str, Any] = field(default_factory=dict)  # API name -> its backend

    def __post_init__(self) -> None:
        self.store = Store(self.state_dir)
        saved = self.store.collection("localcloud")
        self.clock.offset = float(saved.get("clock_offset", 0.0))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def save_clock(self) -> None:
        self.store.collection("localcloud")["clock_offset"] = self.clock.offset
        self.store.save("localcloud")

    def project_number(self, project: str) -> str:
        """A stable 12-digit number for a project id (Google returns numbers in some names)."""
        if project.isdigit():
            return project
        numbers = self.store.collection("projects")
        if project not in numbers:
            digest = int(hashlib.sha256(project.encode()).hexdigest(), 16)
            numbers[project] = str(100000000000 + digest % 900000000000)
            self.store.save("projects")
        return numbers[project]

    def project_id(self, project: str) -> str:
        """The project id for an id or a number localcloud has handed out."""
        if not project.isdigit():
            return project
        for pid, number in self.store.collection("projects").items():
            if number == project:
                return pid
        return project
