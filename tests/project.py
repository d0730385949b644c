"""A throwaway opslib project (service/ + parameters/) for tests that run steps end to end."""

from __future__ import annotations

from pathlib import Path

import lc
import yaml

from conftest import EXAMPLE, copy_service, merge


def make_project(root: Path) -> Path:
    """`root` as a user's project: a copy of the seed's service/ and an empty parameters/."""
    copy_service(root / "service")
    (root / "parameters").mkdir()
    return root


def add_params(root: Path, stem: str, base: Path = EXAMPLE, **overrides: object) -> Path:
    """parameters/<stem>.yaml from `base` with `overrides` merged (nested dicts merge)."""
    data = merge(yaml.safe_load(base.read_text()), overrides)
    data["region"] = data.get("region", lc.REGION)
    path = root / "parameters" / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def job_of(params: Path) -> str:
    return yaml.safe_load(params.read_text())["job"]["name"]
