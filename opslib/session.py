"""What every step notebook opens first: the spec, its target's clients and the service copy.

A notebook runs with its own directory as the working directory (JupyterLab) or the project
root (the runner), so every path here is resolved against the project root, found from the
parameters file, never against the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from opslib.clients import Clients
from opslib.errors import BadInput
from opslib.spec import Spec
from opslib.spec_loader import load_spec

TARGETS = ("local", "gcp")


def project_root(start: Path) -> Path:
    """The nearest directory above `start` holding service/batch_endpoint.py (else its parent)."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / "service" / "batch_endpoint.py").is_file():
            return directory
    return start.parent if start.is_file() else start


@dataclass
class Session:
    """One automation on one target, as the step notebooks and the runner use it."""

    spec: Spec
    params: Path
    root: Path
    service_dir: Path
    localcloud_state: Path = field(repr=False)

    @cached_property
    def clients(self) -> Clients:
        """Clients for the target; on `local`, localcloud is started first if none is running."""
        if self.spec.target == "gcp":
            return Clients("gcp", self.spec.project)
        return Clients("local", self.spec.project, ensure_localcloud(self.localcloud_state))


def ensure_localcloud(state: Path) -> str:
    """The URL of the localcloud for `state`, started detached when none answers."""
    from opslib.localcloud import control

    if os.environ.get("OPSLIB_LOCALCLOUD_URL"):
        return os.environ["OPSLIB_LOCALCLOUD_URL"].rstrip("/")
    running = control.read(state) or control.start(state, detach=True)
    return running.url


def open_session(
    params: str | os.PathLike[str],
    target: str | None = None,
    service_dir: str | os.PathLike[str] | None = None,
) -> Session:
    """Load and validate `params`; `target` overrides the file's own (local | gcp)."""
    path = Path(params).expanduser()
    if not path.is_absolute() and not path.exists():
        # A notebook opened in notebooks/ names parameters/x.yaml relative to the project root.
        candidate = project_root(Path.cwd()) / path
        path = candidate if candidate.exists() else path
    spec = load_spec(path)
    if target not in (None, "", *TARGETS):
        raise BadInput(
            "target",
            f"target {target!r} is not one of {', '.join(TARGETS)}",
            "pass --target local (localcloud, the default) or --target gcp",
        )
    if target and target != spec.target:
        spec = spec.model_copy(update={"target": target})
    root = project_root(path)
    work = Path(service_dir) if service_dir else root / "runs" / path.stem / "service"
    state = Path(os.environ.get("OPSLIB_LOCALCLOUD_STATE", root / ".localcloud"))
    return Session(spec, path.resolve(), root, work.resolve(), state.resolve())
