"""The shared context every emulated API works in: state, clock, projects, and the interfaces
through which one API drives another.

The APIs are packages that never import each other. Where Google's services really depend on
one another, the dependency is one of the small interfaces below, set on `Cloud` by the server:
- `logs` (`LogWriter`): Run, Scheduler and Cloud Build write log entries; Logging stores them;
  Monitoring watches each stored entry against its log-match conditions.
- `registry` (`ImageRegistry`): Cloud Build pushes images; Run resolves and runs them.
- `secrets` (`SecretReader`): Run reads `secretKeyRef` values from Secret Manager.
- `objects` (`ObjectReader`): Cloud Build reads its source tarball from Cloud Storage.
Scheduler reaches Run only over HTTP, as on Google: a target on run.googleapis.com is sent to
localcloud's own Run API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opslib.localcloud.children import Children
from opslib.localcloud.clock import Clock
from opslib.localcloud.store import Store


class LogWriter(Protocol):
    """Cloud Logging's write side: store one entry (Logging fills its timestamps and id);
    `watchers` see each entry once stored, `matcher` compiles a filter in Logging's language
    (Monitoring's log-match conditions use both)."""

    watchers: list[Callable[[dict[str, Any]], None]]

    def write(self, entry: dict[str, Any]) -> dict[str, Any]: ...

    def matcher(self, filter_text: str) -> Callable[[dict[str, Any]], bool]: ...


@dataclass(frozen=True)
class RunnableImage:
    """What Cloud Run needs of an image Cloud Build built: its files and how to start it."""

    digest: str
    root: Path  # the image's files at their paths
    workdir: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    bin: Path  # the bin folder of the image's Python environment


class ImageRegistry(Protocol):
    """The registry Cloud Build pushes to and Cloud Run pulls from."""

    def resolve_image(self, image: str) -> str | None:
        """The digest a reference (tag or @sha256) names, or None if it was never built."""
        ...

    def runnable(self, digest: str) -> RunnableImage: ...


class SecretReader(Protocol):
    """Secret Manager's payloads, as Cloud Run reads them for `secretKeyRef` env vars."""

    def access(self, project: str, secret: str, version: str) -> bytes: ...


class ObjectReader(Protocol):
    """Cloud Storage objects, as Cloud Build reads its source."""

    def object(self, bucket: str, name: str) -> dict[str, Any]: ...

    def read(self, bucket: str, name: str) -> bytes: ...


@dataclass
class Cloud:
    """localcloud's state for one server process."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    grpc_port: int = 0  # Monitoring's gRPC face (its official client has no REST transport)
    clock: Clock = field(default_factory=Clock)
    store: Store = field(init=False)
    # The interfaces between APIs (module docstring), set by the server as it registers them.
    logs: LogWriter = field(init=False)
    registry: ImageRegistry = field(init=False)
    secrets: SecretReader = field(init=False)
    objects: ObjectReader = field(init=False)
    services: dict[str, Any] = field(default_factory=dict)  # API name -> its backend (server)
    children: Children = field(init=False)  # the processes it runs, for the next start to find

    def __post_init__(self) -> None:
        self.store = Store(self.state_dir)
        self.children = Children(self.state_dir)
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
