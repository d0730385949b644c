"""Python environments for images: what `RUN pip install` produces, built without a network.

An image's environment is a fresh venv holding exactly the requested distributions and their
dependencies, linked file by file from localcloud's own Python environment. A module that is
not in requirements.txt therefore fails to import, as it would on Cloud Run. Environments are
cached by their content (Python version + the resolved distributions), so rebuilds are fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


class ResolveError(Exception):
    """A requirement cannot be satisfied from this machine's packages."""


def resolve(requirements: list[str]) -> list[metadata.Distribution]:
    """The distributions `requirements` need, dependencies included, from this environment."""
    found: dict[str, metadata.Distribution] = {}
    queue: list[tuple[Requirement, str]] = []
    for line in requirements:
        try:
            queue.append((Requirement(line), line))
        except InvalidRequirement as exc:
            raise ResolveError(f"invalid requirement {line!r}: {exc}") from None
    while queue:
        req, origin = queue.pop()
        name = canonicalize_name(req.name)
        try:
            dist = found.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise ResolveError(
                f"{origin}: {req.name} is not installed on this machine, and localcloud installs "
                "packages offline from its own environment (pip install it next to opslib)"
            ) from None
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            raise ResolveError(
                f"{origin}: needs {req.name}{req.specifier}, this machine has {dist.version}"
            )
        if name in found:
            continue
        found[name] = dist
        for extra in ["", *sorted(req.extras)]:
            for sub in dist.requires or []:
                child = Requirement(sub)
                env = {**default_environment(), "extra": extra}
                if child.marker is None and extra:
                    continue
                if child.marker is None or child.marker.evaluate(env):
                    queue.append((child, f"{dist.metadata['Name']} (needed by {origin})"))
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def env_key(dists: list[metadata.Distribution]) -> str:
    ids = [f"{d.metadata['Name']}=={d.version}" for d in dists]
    text = f"python{sys.version_info.major}.{sys.version_info.minor}\n" + "\n".join(ids)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def ensure_env(requirements: list[str], envs_dir: Path) -> Path:
    """A venv with exactly the resolved distributions; reused when one with the same key exists."""
    dists = resolve(requirements)
    target = envs_dir / env_key(dists)
    if (target / ".complete").exists():
        return target
    tmp = envs_dir / f".tmp-{uuid.uuid4().hex}"
    subprocess.run(
        [sys._base_executable, "-m", "venv", "--without-pip", str(tmp)],
        check=True,
        capture_output=True,
    )
    site = next((tmp / "lib").glob("python3*/site-packages"))
    for dist in dists:
        _link(dist, site)
        _scripts(dist, tmp / "bin", target / "bin" / "python")
    (tmp / ".complete").write_text("\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists))
    try:
        tmp.rename(target)
    except OSError:  # another build made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _link(dist: metadata.Distribution, site: Path) -> None:
    """Symlink every file the distribution installed under site-packages."""
    base = Path(dist.locate_file("")).resolve()
    for file in dist.files or []:
        if file.parts and file.parts[0] == "..":
            continue
        source = base / file
        if not source.exists():
            continue
        dest = site / file
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.symlink(source, dest)


def _scripts(dist: metadata.Distribution, bin_dir: Path, python: Path) -> None:
    """Console scripts of the distribution, as pip would write them."""
    for entry in dist.entry_points.select(group="console_scripts"):
        module, _, attr = entry.value.partition(":")
        head = attr.split(".")[0] if attr else ""
        call = attr if attr else "main"
        script = bin_dir / entry.name
        script.write_text(
            f"#!{python}\nimport sys\nfrom {module} import {head or 'main'}\nsys.exit({call}())\n"
        )
        script.chmod(0o755)
