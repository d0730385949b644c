"""The one way in: an automation's spec, its project, its service folder and its target's clients.

Every command, notebook and page opens an automation here (`open_session`; a fleet of them
through `opslib.fleet.load.open_fleet`), so they all find the same things from any working
directory: the project root is the folder holding `service/batch_endpoint.py` above the
parameters file (else above the working directory); relative paths are tried as given, then
from that root; localcloud's state is `<root>/.localcloud` (or $OPSLIB_LOCALCLOUD_STATE) and
it is started on demand for `target: local`. There is no second path to the clients.

The service folder is the spec's `service_dir` in the project (default `service/`, the folder
the user commits), shared by every automation naming that service; with a workspace it is the
same path under the workspace (what `make demo` uses, so the repository stays clean), which
`opslib.steps.endpoint.folder.ensure_service_dir` copies from the project once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from opslib.cloud.clients import Clients
from opslib.core.errors import BadInput
from opslib.spec.loader import load_spec, spec_from_mapping
from opslib.spec.model import Spec
from opslib.spec.project import locate, project_root

TARGETS = ("local", "gcp")
# A spec's top-level keys besides `target`: every step notebook declares them as parameters.
SPEC_KEYS = ("project", "region", "service", "job", "schedule", "deploy", "secrets")
STATE_ENV = "OPSLIB_LOCALCLOUD_STATE"
URL_ENV = "OPSLIB_LOCALCLOUD_URL"


@dataclass
class Session:
    """One automation on one target, as every command, notebook and page opens it."""

    spec: Spec
    params: Path
    root: Path
    service_dir: Path
    localcloud_state: Path = field(repr=False)
    workspace: Path | None = None
    _clients: Clients | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def project_service_dir(self) -> Path:
        """The service's folder in the user's project (what they commit)."""
        return (self.root / self.spec.service_dir).resolve()

    @property
    def clients(self) -> Clients:
        """Clients for the target, shared by every session on it; localcloud starts if needed."""
        if self._clients is None:
            url = None if self.spec.target == "gcp" else ensure_localcloud(self.localcloud_state)
            self._clients = shared_clients(self.spec.target, self.spec.project, url)
        return self._clients


@cache
def shared_clients(target: str, project: str, endpoint: str | None) -> Clients:
    """One `Clients` per target, project and endpoint for the process: each API client is
    built once, however many automations and steps use it."""
    return Clients(target, project, endpoint)


def state_dir(root: Path) -> Path:
    """Where the project's localcloud keeps its state: $OPSLIB_LOCALCLOUD_STATE or .localcloud
    in the project root, whatever the working directory."""
    return Path(os.environ.get(STATE_ENV) or root / ".localcloud").resolve()


def ensure_localcloud(state: Path) -> str:
    """The URL of the localcloud for `state`, started detached when none answers."""
    from opslib.localcloud import control

    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV].rstrip("/")
    running = control.read(state)
    if running is None:
        # The usual port, unless another state directory's localcloud already holds it.
        try:
            running = control.start(state, port=control.pick_port(), detach=True)
        except control.PortBusy:  # taken between the pick and the bind
            running = control.start(state, port=0, detach=True)
    return running.url


def open_session(
    params: str | os.PathLike[str] | None = None,
    target: str | None = None,
    service_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    **spec_keys: object,
) -> Session:
    """The spec from `params`, or from its keys given one by one; `target` overrides its own.

    `opslib run` passes `params`; `papermill NB OUT -f parameters/NAME.yaml` passes the file's
    keys (project, job, schedule, ...), which then win over `params`. A relative
    `service_dir` or `workspace` is taken from the project root, never from the working
    directory.
    """
    unknown = sorted(set(spec_keys) - set(SPEC_KEYS))
    if unknown:
        raise BadInput("notebook parameters", f"unknown key(s) {unknown}", f"use {SPEC_KEYS}")
    check_target(target)
    given = {k: v for k, v in spec_keys.items() if v is not None}
    if given:
        if service_dir and not Path(service_dir).is_absolute():  # `-f` passes the spec's own
            given["service_dir"], service_dir = str(service_dir), None
        spec = spec_from_mapping({**given, **({"target": target} if target else {})})
        root = project_root(Path.cwd())
        if not (root / "service" / "batch_endpoint.py").is_file() and not service_dir:
            raise BadInput(
                "notebook parameters",
                f"no opslib project (service/batch_endpoint.py) at or above {Path.cwd()}",
                "run from the project (papermill --cwd PROJECT) or pass -p service_dir DIR",
            )
        path = Path(params).resolve() if params else root / "parameters" / f"{spec.job.name}.yaml"
    else:
        if params is None:
            raise BadInput("params", "no parameters file given", "pass params=PATH.yaml")
        path = locate(Path(params).expanduser())
        spec = load_spec(path)
        if target and target != spec.target:
            spec = spec.model_copy(update={"target": target})
        root = project_root(path)
    return _session(spec, path, root, service_dir, workspace)


def check_target(target: str | None) -> None:
    """`target` is unset, or one of TARGETS."""
    if target not in (None, "", *TARGETS):
        raise BadInput(
            "target",
            f"target {target!r} is not one of {', '.join(TARGETS)}",
            "pass --target local (localcloud, the default) or --target gcp",
        )


def _session(
    spec: Spec,
    path: Path,
    root: Path,
    service_dir: str | os.PathLike[str] | None,
    workspace: str | os.PathLike[str] | None,
) -> Session:
    """Where this automation's service folder is: given, in the workspace, or in the project.

    The folder the steps write must stay inside the project (inside the workspace, when there
    is one), symlinks followed: a service_dir through a link to elsewhere is refused before
    anything is created. The workspace itself may be anywhere (its help says so).
    """
    space = under(root, workspace) if workspace else None
    base = space or root
    folder = under(root, service_dir) if service_dir else (base / spec.service_dir).resolve()
    if not any(folder.is_relative_to(b) for b in {root.resolve(), base.resolve()}):
        raise _outside(spec, path, service_dir, folder, base)
    return Session(spec, path.resolve(), root, folder, state_dir(root), space)


def _outside(spec: Spec, path: Path, given: object, folder: Path, base: Path) -> BadInput:
    """The refusal of a service folder outside the project (or the workspace)."""
    from opslib.core.errors import clip
    from opslib.spec.loader import key_line

    if given:
        where, value = "--service-dir", str(given)
    else:
        line = key_line(path, "service_dir") if path.is_file() else None
        where = f"{path}:{line}: service_dir" if line else f"{path}: service_dir"
        value = spec.service_dir
    return BadInput(
        where,
        f"{clip(value)!r} resolves to {folder} (symlinks followed), outside {base}\n"
        "  rule: every folder opslib writes stays inside the project",
        "use a folder inside the project, e.g. services/<service>; --workspace DIR works on "
        "copies anywhere",
    )


def under(root: Path, path: str | os.PathLike[str]) -> Path:
    """A path as given when absolute, else relative to the project root (not the cwd)."""
    path = Path(path).expanduser()
    return path.resolve() if path.is_absolute() else (root / path).resolve()
