"""A project's layout: its root (the folder holding `service/`) and its parameters files.

A notebook runs with its own directory as the working directory (JupyterLab) or the project
root (the runner), so a relative path is tried as given, then from the project root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from opslib.core.errors import BadInput


def project_root(start: Path) -> Path:
    """The nearest directory above `start` holding service/batch_endpoint.py (else its parent)."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / "service" / "batch_endpoint.py").is_file():
            return directory
    return start.parent if start.is_file() else start


def locate(path: Path) -> Path:
    """A relative path as given, else from the project root (notebooks run in notebooks/)."""
    if path.is_absolute() or path.exists():
        return path
    candidate = project_root(Path.cwd()) / path
    return candidate if candidate.exists() else path


def params_files(params: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files and folders (every *.yaml / *.yml inside, sorted) as one de-duplicated list."""
    given = [params] if isinstance(params, str | os.PathLike) else list(params)
    if not given:
        raise BadInput("params", "no parameters file given", "pass PARAMS.yaml or parameters/")
    found: list[Path] = []
    for item in given:
        path = locate(Path(item).expanduser())
        if path.is_dir():
            inside = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not inside:
                raise BadInput(str(path), "holds no *.yaml parameters file", "pass a file")
            found.extend(inside)
        else:
            found.append(path)
    unique: dict[Path, None] = {p.resolve(): None for p in found}
    return list(unique)


def default_params(root: Path) -> Path:
    """The project's parameters/ folder: what a command given no files works on."""
    folder = root / "parameters"
    if not folder.is_dir():
        raise BadInput(
            "parameters",
            f"no parameters/ folder in {root}",
            "run it in an opslib project, or pass PARAMS.yaml files or folders",
        )
    return folder


def typed(path: Path, root: Path) -> str:
    """A path as a printed command should carry it: from the project root when the working
    directory is inside the project (opslib finds such paths from any of its folders), else
    absolute, so the command runs as printed."""
    path = Path(path).resolve()
    inside = Path.cwd().resolve().is_relative_to(root.resolve())
    if inside and path.is_relative_to(root.resolve()):
        return path.relative_to(root.resolve()).as_posix()
    return str(path)
