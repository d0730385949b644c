"""Carry out a Dockerfile for a Python service, without Docker.

Supported: FROM python:<this machine's major.minor>[-variant], ARG, ENV, WORKDIR, COPY/ADD
from the context (honouring .dockerignore), RUN `pip install ...` (offline, see pyenv), RUN
`python ...` and `mkdir -p`, CMD, ENTRYPOINT; EXPOSE, LABEL, USER, HEALTHCHECK, STOPSIGNAL
are recorded or ignored. Any other instruction fails the build and names itself.
The image is a folder (the files at their paths) plus a config; its digest is its content.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec
from dockerfile_parse import DockerfileParser

from opslib.localcloud.cloudbuild.pyenv import ResolveError, ensure_env

IGNORED = {"EXPOSE", "LABEL", "USER", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER", "VOLUME"}


class BuildFailed(Exception):
    """The build cannot go on; the message names the instruction and the reason."""


@dataclass
class Image:
    """A built image: files under `root`, and how to run them (no defaults: those are _State's)."""

    digest: str
    root: Path
    workdir: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    pyenv: str

    def config(self) -> dict[str, object]:
        return {
            "workdir": self.workdir,
            "env": self.env,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "pyenv": self.pyenv,
        }


@dataclass
class _State:
    """What the Dockerfile has set so far, from the defaults an image starts with."""

    root: Path
    envs: Path
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    pyenv: Path | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=lambda: ["python3"])

    def path(self, inside: str) -> Path:
        absolute = inside if inside.startswith("/") else os.path.join(self.workdir, inside)
        return self.root / os.path.normpath(absolute).lstrip("/")


def build(
    context: Path, images: Path, log: Callable[[str], None], dockerfile: str = "Dockerfile"
) -> Image:
    """Run the Dockerfile in `context`; the image lands in images/<digest>."""
    path = context / dockerfile
    if not path.is_file():
        raise BuildFailed(f"unable to prepare context: no {dockerfile} in the build source")
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    work = images / f".tmp-{uuid.uuid4().hex}"
    state = _State(root=work / "root", envs=images / "envs")
    state.root.mkdir(parents=True)
    state.envs.mkdir(exist_ok=True)
    ignore = _ignore(context)
    steps = [i for i in parser.structure if i["instruction"] != "COMMENT"]
    try:
        for number, step in enumerate(steps, 1):
            log(f"Step {number}/{len(steps)} : {step['content'].strip()}")
            _run(step["instruction"], _expand(step["value"], state), state, context, ignore, log)
        image = _finish(state, work, images)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f"Successfully built {image.digest}")
    return image


def _expand(value: str, state: _State) -> str:
    values = {**state.args, **state.env}
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), value
    )


def _ignore(context: Path) -> pathspec.PathSpec:
    lines = (
        (context / ".dockerignore").read_text().splitlines()
        if (context / ".dockerignore").exists()
        else []
    )
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _run(
    kind: str,
    value: str,
    state: _State,
    context: Path,
    ignore: pathspec.PathSpec,
    log: Callable[[str], None],
) -> None:
    if kind == "FROM":
        _from(value)
    elif kind == "ARG":
        name, _, default = value.partition("=")
        state.args.setdefault(name.strip(), default.strip().strip('"'))
    elif kind == "ENV":
        state.env.update(_env_pairs(value))
    elif kind == "WORKDIR":
        state.workdir = os.path.normpath(os.path.join(state.workdir, value.strip()))
        state.path(".").mkdir(parents=True, exist_ok=True)
    elif kind in ("COPY", "ADD"):
        _copy(kind, value, state, context, ignore)
    elif kind == "RUN":
        for command in _commands(value):
            _run_command(command, value, state, log)
    elif kind in ("CMD", "ENTRYPOINT"):
        argv = json.loads(value) if value.strip().startswith("[") else ["/bin/sh", "-c", value]
        if kind == "CMD":
            state.cmd = argv
        else:
            state.entrypoint = argv
    elif kind in IGNORED:
        log(f" ---> {kind} recorded, nothing to do")
    else:
        raise BuildFailed(f"{kind} {value}: localcloud cannot carry out {kind} instructions")


def _from(value: str) -> None:
    image = value.split()[0]
    match = re.match(r"^(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)", image)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not match:
        raise BuildFailed(f"FROM {image}: localcloud builds images FROM python:{here} only")
    if f"{match.group(1)}.{match.group(2)}" != here:
        raise BuildFailed(
            f"FROM {image}: this machine runs Python {here}; use FROM python:{here}-slim"
        )


def _env_pairs(value: str) -> dict[str, str]:
    parts = shlex.split(value)
    if parts and "=" not in parts[0]:
        return {parts[0]: " ".join(parts[1:])}
    return dict(part.split("=", 1) for part in parts)


def _copy(kind: str, value: str, state: _State, context: Path, ignore: pathspec.PathSpec) -> None:
    parts = [
        p for p in shlex.split(value) if not p.startswith("--chown") and not p.startswith("--chmod")
    ]
    if any(p.startswith("--") for p in parts):
        raise BuildFailed(f"{kind} {value}: flags other than --chown/--chmod are not supported")
    *sources, dest = parts
    if not sources:
        raise BuildFailed(f"{kind} {value}: needs a source and a destination")
    target = state.path(dest)
    many = len(sources) > 1 or dest.endswith("/")
    for source in sources:
        matches = sorted(glob.glob(str(context / source))) or []
        if not matches:
            raise BuildFailed(f"{kind} {value}: {source} not found in the build context")
        for match in matches:
            _copy_one(Path(match), context, target, many or Path(match).is_dir(), ignore)


def _copy_one(
    source: Path, context: Path, target: Path, into: bool, ignore: pathspec.PathSpec
) -> None:
    if source.is_dir():
        for file in sorted(source.rglob("*")):
            relative = file.relative_to(context).as_posix()
            if file.is_dir() or ignore.match_file(relative):
                continue
            dest = target / file.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)
        return
    if ignore.match_file(source.relative_to(context).as_posix()):
        return
    dest = target / source.name if into or target.is_dir() else target
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


def _commands(value: str) -> list[list[str]]:
    if value.strip().startswith("["):
        return [json.loads(value)]
    return [shlex.split(part) for part in re.split(r"&&|;", value) if part.strip()]


def _run_command(argv: list[str], value: str, state: _State, log: Callable[[str], None]) -> None:
    program = os.path.basename(argv[0]) if argv else ""
    if program in ("pip", "pip3") or argv[1:3] == ["-m", "pip"]:
        args = argv[1:] if program in ("pip", "pip3") else argv[3:]
        _pip(args, value, state, log)
    elif re.fullmatch(r"python3?(\.\d+)?", program):
        _python(argv[1:], value, state, log)
    elif program == "mkdir":
        for name in (a for a in argv[1:] if not a.startswith("-")):
            state.path(name).mkdir(parents=True, exist_ok=True)
    else:
        raise BuildFailed(f"RUN {value}: localcloud runs only pip install, python and mkdir in RUN")


def _pip(args: list[str], value: str, state: _State, log: Callable[[str], None]) -> None:
    if not args or args[0] != "install":
        raise BuildFailed(f"RUN {value}: only `pip install` is supported")
    wanted, rest = [], iter(args[1:])
    for arg in rest:
        if arg in ("-r", "--requirement"):
            wanted += _requirements_file(state.path(next(rest, "")), value)
        elif arg.startswith("--requirement="):
            wanted += _requirements_file(state.path(arg.split("=", 1)[1]), value)
        elif arg.startswith("-"):
            if arg in (
                "-c",
                "--constraint",
                "-i",
                "--index-url",
                "-e",
                "--editable",
                "-t",
                "--target",
            ):
                raise BuildFailed(f"RUN {value}: pip option {arg} is not supported")
        else:
            wanted.append(arg)
    state.requirements += wanted
    try:
        state.pyenv = ensure_env(state.requirements, state.envs)
    except ResolveError as exc:
        raise BuildFailed(f"RUN {value}: {exc}") from None
    log(" ---> installed: " + (state.pyenv / ".complete").read_text().replace("\n", ", "))


def _requirements_file(path: Path, value: str) -> list[str]:
    if not path.is_file():
        raise BuildFailed(f"RUN {value}: requirements file {path.name} not found in the image")
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-"):
            raise BuildFailed(f"RUN {value}: {path.name}: option lines ({line}) are not supported")
        if line:
            lines.append(line)
    return lines


def _python(args: list[str], value: str, state: _State, log: Callable[[str], None]) -> None:
    pyenv = state.pyenv or ensure_env([], state.envs)
    state.pyenv = pyenv
    env = {"PATH": f"{pyenv / 'bin'}:/usr/bin:/bin", **state.env}
    result = subprocess.run(
        [str(pyenv / "bin" / "python"), *args],
        cwd=state.path("."),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in (result.stdout + result.stderr).splitlines():
        log(line)
    if result.returncode != 0:
        raise BuildFailed(f"RUN {value}: returned a non-zero code: {result.returncode}")


def _finish(state: _State, work: Path, images: Path) -> Image:
    pyenv = state.pyenv or ensure_env([], state.envs)
    image = Image("", images, state.workdir, state.env, state.entrypoint, state.cmd, pyenv.name)
    digest = hashlib.sha256(json.dumps(image.config(), sort_keys=True).encode())
    for file in sorted(state.root.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts:
            digest.update(file.relative_to(state.root).as_posix().encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    image.digest = f"sha256:{digest.hexdigest()}"
    final = images / image.digest.split(":")[1]
    if final.exists():
        shutil.rmtree(work)
    else:
        (work / "config.json").write_text(json.dumps(image.config()))
        work.rename(final)
    image.root = final / "root"
    return image


def load(images: Path, digest: str) -> Image:
    """An image built earlier, by digest."""
    folder = images / digest.split(":")[-1]
    config = json.loads((folder / "config.json").read_text())
    return Image(
        digest,
        folder / "root",
        config["workdir"],
        config["env"],
        config["entrypoint"],
        config["cmd"],
        config["pyenv"],
    )
