"""pyproject.toml, environment.yml and the service's requirements stay in step."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT, SERVICE


def _name(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2).replace(" ", "")


def _pyproject() -> tuple[dict[str, str], dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = dict(_name(r) for r in project["dependencies"])
    dev = dict(_name(r) for r in project["optional-dependencies"]["dev"])
    return runtime, dev


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    found: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        found.update(_name(item) for item in items)
    return {k: v for k, v in found.items() if k not in ("python", "pip")}


def test_environment_yml_matches_pyproject():
    runtime, dev = _pyproject()
    expected = {**runtime, **dev}
    actual = _environment()
    assert sorted(set(expected) - set(actual)) == [], "in pyproject.toml, not environment.yml"
    assert sorted(set(actual) - set(expected)) == [], "in environment.yml, not pyproject.toml"
    drift = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
    assert drift == {}, f"version bounds differ (pyproject, environment.yml): {drift}"


def test_service_requirements_are_installed_for_tests():
    _, dev = _pyproject()
    lines = (SERVICE / "requirements.txt").read_text().splitlines()
    service = dict(_name(line) for line in lines if line.strip() and not line.startswith("#"))
    assert "opslib" not in service, "the deployed image must never carry opslib"
    missing = {k: v for k, v in service.items() if dev.get(k) != v}
    assert missing == {}, f"service/requirements.txt not mirrored in the dev extra: {missing}"
