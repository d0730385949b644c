"""The packed service folder and the image it yields: what step 3 builds and ships.

The tag is the hash of the packed source, so an unchanged folder names the image the live
service already runs, and the plan says "no change" without building.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pathspec

from opslib.spec import names
from opslib.spec.model import Spec


@dataclass
class Source:
    """The packed service folder: a deterministic tarball and the tag it yields."""

    data: bytes
    tag: str


def pack(service_dir: Path) -> Source:
    """tar.gz of the folder minus .gcloudignore, byte-identical for identical content."""
    raw = _tar(service_dir)
    return Source(gzip.compress(raw, mtime=0), _tag(raw))


def tag_of(service_dir: Path) -> str:
    """`pack(service_dir).tag`, packed again only when a file's size or mtime changed since the
    last call in this process: `opslib status` asks for every service on every call."""
    stats = sorted((str(p), p.stat()) for p in Path(service_dir).rglob("*") if p.is_file())
    stamp = tuple((path, stat.st_size, stat.st_mtime_ns) for path, stat in stats)
    return _cached_tag(str(service_dir), stamp)


@functools.lru_cache(maxsize=64)
def _cached_tag(service_dir: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return _tag(_tar(Path(service_dir)))


def _tag(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _tar(service_dir: Path) -> bytes:
    """The uncompressed, deterministic tar of what step 3 ships (the tag hashes it)."""
    ignore_file = service_dir / ".gcloudignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.exists() else []
    spec = pathspec.GitIgnoreSpec.from_lines([*lines, ".git/", "__pycache__/"])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in service_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(service_dir).as_posix()
            if spec.match_file(relative):
                continue
            info = tarfile.TarInfo(relative)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            archive.addfile(info, io.BytesIO(path.read_bytes()))
    return buffer.getvalue()


def image_for(spec: Spec, source: Source) -> str:
    """The Artifact Registry image of this source (Container Registry, gcr.io, is shut down)."""
    return names.image(spec, source.tag)


def source_routes(service_dir: Path) -> list[str]:
    """The paths the endpoint file in `service_dir` serves."""
    from opslib.steps.endpoint import patch as endpoint

    info = endpoint.load(Path(service_dir) / endpoint.ENDPOINT_FILE)
    return sorted({r.path for r in info.routes})
