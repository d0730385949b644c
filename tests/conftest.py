"""Shared fixtures: a fresh copy of the service, parameters files, a real gunicorn."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"
EXAMPLE = ROOT / "parameters" / "example.yaml"
DATA = Path(__file__).resolve().parent / "data"

# The service's own modules (scripts.common.http, ...) are imported by some unit tests.
sys.path.insert(0, str(SERVICE))


def copy_service(target: Path) -> Path:
    shutil.copytree(SERVICE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    """A private copy of service/ (tests never touch the committed one)."""
    return copy_service(tmp_path / "service")


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


DELETE = object()


@pytest.fixture
def write_params(tmp_path: Path):
    """Write example.yaml with overrides (nested dicts merge; DELETE removes a key)."""

    def write(name: str = "params", **overrides) -> Path:
        data = merge(yaml.safe_load(EXAMPLE.read_text()), overrides)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def tool(name: str) -> str:
    """A console script installed next to this interpreter (ruff, opslib, gunicorn)."""
    return str(Path(sys.executable).parent / name)
