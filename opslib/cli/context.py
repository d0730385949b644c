"""How every command opens what it works on: one set of options, one call into the session.

Each command that takes parameters files accepts the same `--target`, `--workspace` and (where
a service folder matters) `--service-dir`, and opens its automation (`open_from`) or its fleet
(`fleet_from`) through `opslib.cloud.session`: the same project root, the same localcloud,
started on demand, from any working directory. Paths typed on the command line are relative
to the working directory, as a shell user expects; everything else is found from the project.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opslib.cloud.session import Session
    from opslib.fleet.load import Fleet

TARGETS = ("local", "gcp")


def add_context(parser: argparse.ArgumentParser, service_dir: str = "") -> None:
    """The options every automation command shares; `service_dir` is its help, when it has one."""
    parser.add_argument("--target", choices=TARGETS, help="override the files' target")
    parser.add_argument(
        "--workspace",
        type=Path,
        help="work on copies of the service folders under this folder, as opslib run does "
        "(it may be outside the project: the one path that may)",
    )
    if service_dir:
        parser.add_argument("--service-dir", type=Path, help=service_dir)


def _typed(path: Path | None) -> Path | None:
    """A path typed on the command line, from the working directory."""
    return path.expanduser().resolve() if path is not None else None


def open_from(args: argparse.Namespace) -> Session:
    """The automation of `args.params`, as the options say."""
    from opslib.cloud.session import open_session

    return open_session(
        args.params,
        target=getattr(args, "target", None),
        service_dir=_typed(getattr(args, "service_dir", None)),
        workspace=_typed(getattr(args, "workspace", None)),
    )


def fleet_from(args: argparse.Namespace, params: list[Path]) -> Fleet:
    """The automations of `params` (files and folders), as the options say."""
    from opslib.fleet.load import open_fleet

    return open_fleet(
        params,
        target=getattr(args, "target", None),
        service_dir=_typed(getattr(args, "service_dir", None)),
        workspace=_typed(getattr(args, "workspace", None)),
    )
