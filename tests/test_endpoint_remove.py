"""Destroy on real service folders: add-then-remove gives the file back; refusals change nothing."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import libcst as cst
import pytest
import requests
import yaml

from conftest import DATA, EXAMPLE, copy_service, merge, seed_service
from opslib.core.errors import BadInput
from opslib.spec.loader import load_spec
from opslib.spec.model import Job, Spec
from opslib.steps.endpoint import remove as endpoint_remove
from opslib.steps.endpoint import serve as localserve
from opslib.steps.endpoint.imports import ensure_imports
from opslib.steps.endpoint.patch import patch_endpoint
from opslib.steps.endpoint.remove import plan_removal, remove_job
from opslib.steps.endpoint.source import parse
from opslib.steps.scaffold import scaffold

ENDPOINTS = DATA / "endpoints"
HAND_WRITTEN = ["seed_style", "two_space_dict_entries", "module_constant_one_line", "lint_bad"]
TEMPLATE = (seed_service() / "batch_endpoint.py").read_bytes()
TEMPLATE_INDEX = b'    endpoints = [\n        "/health",\n    ]\n'
# index() list shapes beyond the committed files: each must come back exactly.
SHAPES = {
    "one-line": b'    endpoints = ["/health"]\n',
    "empty": b"    endpoints = []\n",
    "no-trailing-comma": b'    endpoints = [\n        "/health"\n    ]\n',
    "comment-after-last": b'    endpoints = [\n        "/health",  # keep me\n    ]\n',
    "comment-no-comma": b'    endpoints = [\n        "/health"  # keep me\n    ]\n',
    "method-strings": b'    endpoints = ["GET /health"]\n',
    "dicts": b'    endpoints = [\n        {"path": "/health", "method": "GET", "note": "Up"},'
    b"\n    ]\n",
    "constant-name": b"    endpoints = [HEALTH]\n",
}


def _shape(index: bytes) -> bytes:
    text = TEMPLATE.replace(TEMPLATE_INDEX, index)
    return text.replace(b"app = Flask", b'HEALTH = "/health"\napp = Flask', 1)


ORIGINALS = {
    "template": TEMPLATE,
    **{name: (ENDPOINTS / f"{name}.py").read_bytes() for name in HAND_WRITTEN},
    **{f"shape-{name}": _shape(index) for name, index in SHAPES.items()},
    "crlf-template": TEMPLATE.replace(b"\n", b"\r\n"),
    "crlf-seed_style": (ENDPOINTS / "seed_style.py").read_bytes().replace(b"\n", b"\r\n"),
}
JOBS = {
    "alpha-one": {},
    "beta": {"job": {"pattern": "class"}},
    "gamma": {"schedule": {"http_method": "PUT"}},
}

Build = Callable[[bytes, Sequence[Spec]], Path]


def test_every_hand_written_file_is_covered():
    """lint_bad.py is patchable too (function pattern), so it belongs in the round trips."""
    assert set(HAND_WRITTEN) == {path.stem for path in ENDPOINTS.glob("*.py")}


@pytest.fixture(scope="session")
def specs(tmp_path_factory) -> Callable[[str], list[Spec]]:
    """Three jobs of different shapes; lint_bad.py lacks the class pattern's helpers."""
    folder = tmp_path_factory.mktemp("specs")

    def load(name: str, overrides: dict) -> Spec:
        data = merge(yaml.safe_load(EXAMPLE.read_text()), merge({"job": {"name": name}}, overrides))
        path = folder / f"{name}-{len(list(folder.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_spec(path)

    full = [load(name, overrides) for name, overrides in JOBS.items()]
    plain = [load(name, {}) for name in JOBS]
    return lambda original: plain if "lint_bad" in original else full


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Build:
    """A service folder with `original` as its endpoint and the jobs added by steps 1-2, cached."""
    cache: dict[tuple, Path] = {}

    def build(original: bytes, jobs: Sequence[Spec]) -> Path:
        key = (original, tuple((s.job.name, s.job.pattern) for s in jobs))
        if key in cache:
            return cache[key]
        folder = tmp_path_factory.mktemp("built") / "service"
        if jobs:  # one more job on a copy of the shorter build: each prefix is patched once
            shutil.copytree(build(original, jobs[:-1]), folder)
            scaffold(jobs[-1], folder)
            patch_endpoint(jobs[-1], folder)
        else:
            copy_service(folder)
            (folder / "batch_endpoint.py").write_bytes(original)
        cache[key] = folder
        return folder

    return build


def work_copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, Path(tempfile.mkdtemp(dir=tmp_path)) / "service"))


def endpoint(folder: Path) -> bytes:
    return (folder / "batch_endpoint.py").read_bytes()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file (and empty folder) with its bytes and mtime: what 'changed nothing' means."""
    return {
        path.relative_to(folder).as_posix(): (
            path.read_bytes() if path.is_file() else b"<dir>",
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file() or not any(path.iterdir())
    }


def with_imports(original: bytes) -> bytes:
    """The original plus the imports step 2 adds; destroy keeps those (other routes use them)."""
    return ensure_imports(cst.parse_module(original.decode()), "skip").code.encode()


def orders(name: str, jobs: list[Spec], count: int = 3) -> list[tuple[Spec, ...]]:
    """Every order for the committed file and the seed's; two for the other variants."""
    if name in ("template", "seed_style"):
        return list(itertools.permutations(jobs, count))
    return [tuple(jobs[:count]), tuple(jobs[-count:][::-1])]


@pytest.mark.parametrize("name", ORIGINALS)
def test_removing_one_gives_the_file_with_only_the_others(name, specs, built, tmp_path):
    original, jobs = ORIGINALS[name], specs(name)
    for order in [*orders(name, jobs, 2), *orders(name, jobs)]:
        for victim in order:
            folder = work_copy(built(original, order), tmp_path)
            plan = remove_job(victim.job, folder)
            assert [c.action for c in plan.changes] == ["delete"] * 4
            rest = [spec for spec in order if spec is not victim]
            assert endpoint(folder) == endpoint(built(original, rest)), (order, victim.job.name)
            text = endpoint(folder).decode()
            compile(text, "batch_endpoint.py", "exec")
            info = parse(text)
            for spec in rest:
                assert info.route_for(spec.job.route) and info.is_registered(spec.job.route)
            assert not info.route_for(victim.job.route)
            assert not info.is_registered(victim.job.route)


@pytest.mark.parametrize("name", ORIGINALS)
def test_removing_all_gives_the_original_back(name, specs, built, tmp_path):
    original, jobs = ORIGINALS[name], specs(name)
    expected = with_imports(original)
    for order in orders(name, jobs):
        for removal in (order, order[1:] + order[:1]):
            folder = work_copy(built(original, order), tmp_path)
            for spec in removal:
                remove_job(spec.job, folder)
            assert endpoint(folder) == expected, ([s.job.name for s in order], name)
            assert not list((folder / "scripts" / "batch").glob("[!_]*.py"))
            assert not list((folder / "tests").glob("*.py"))
    # A file that already has step 2's imports comes back byte for byte, imports and all.
    folder = work_copy(built(expected, jobs), tmp_path)
    for spec in jobs[::-1]:
        remove_job(spec.job, folder)
    assert endpoint(folder) == expected


def test_the_committed_service_comes_back_byte_for_byte_once_it_has_the_imports(
    service_dir, write_params
):
    path = service_dir / "batch_endpoint.py"
    path.write_bytes(with_imports(TEMPLATE))
    before = snapshot(service_dir)
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    remove_job(spec.job, service_dir)
    assert endpoint(service_dir) == before["batch_endpoint.py"][0]
    assert {k: v[0] for k, v in snapshot(service_dir).items()} == {
        k: v[0] for k, v in before.items()
    } | {"tests": b"<dir>"}


@pytest.fixture
def fx_service(service_dir: Path, write_params) -> tuple[Path, Job]:
    spec = load_spec(write_params())
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    return service_dir, spec.job


def test_plan_names_each_thing_it_deletes(fx_service):
    folder, job = fx_service
    removal = plan_removal(job, folder)
    assert [(c.step, c.resource, c.action) for c in removal.plan.changes] == [
        ("destroy", "route /run-fx-rates", "delete"),
        ("destroy", "index entry /run-fx-rates", "delete"),
        ("destroy", "module scripts/batch/fx_rates.py", "delete"),
        ("destroy", "test tests/test_fx_rates.py", "delete"),
    ]
    assert removal.plan.changes[0].detail == "run_fx_rates()"
    assert removal.path == folder / "batch_endpoint.py" and removal.new_source is not None
    assert removal.delete == [
        folder / "scripts" / "batch" / "fx_rates.py",
        folder / "tests" / "test_fx_rates.py",
    ]
    assert removal.plan.to_frame()["action"].tolist() == ["delete"] * 4


def test_second_run_plans_no_change_and_touches_nothing(fx_service):
    folder, job = fx_service
    remove_job(job, folder)
    before = snapshot(folder)
    removal = plan_removal(job, folder)
    assert [c.action for c in removal.plan.changes] == ["no change"] * 4
    assert removal.new_source is None and removal.delete == []
    again = remove_job(job, folder)
    assert [c.action for c in again.changes] == ["no change"] * 4
    assert snapshot(folder) == before


def test_nothing_to_remove_in_a_fresh_service(service_dir):
    before = snapshot(service_dir)
    plan = remove_job(Job(name="fx-rates"), service_dir)
    assert [c.action for c in plan.changes] == ["no change"] * 4
    assert snapshot(service_dir) == before


def test_dry_run_writes_nothing(fx_service):
    folder, job = fx_service
    before = snapshot(folder)
    plan = remove_job(job, folder, dry_run=True)
    assert [c.action for c in plan.changes] == ["delete"] * 4
    assert snapshot(folder) == before


def test_a_module_you_edited_is_deleted_and_the_plan_says_so(fx_service):
    folder, job = fx_service
    module = folder / "scripts" / "batch" / "fx_rates.py"
    module.write_text(module.read_text() + "\n# my own change\n")
    plan = remove_job(job, folder)
    details = {c.resource: (c.action, c.detail) for c in plan.changes}
    assert details["module scripts/batch/fx_rates.py"] == ("delete", "edited by you")
    assert details["test tests/test_fx_rates.py"] == ("delete", "")
    assert not module.exists()


def test_pycache_folders_are_left_alone(fx_service):
    folder, job = fx_service
    caches = [folder / "scripts" / "batch" / "__pycache__", folder / "tests" / "__pycache__"]
    for cache in caches:
        cache.mkdir()
    remove_job(job, folder)
    assert all(cache.is_dir() for cache in caches)


def test_files_stay_when_the_endpoint_write_fails(fx_service, monkeypatch):
    folder, job = fx_service
    before = snapshot(folder)

    def fail(path: Path, text: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(endpoint_remove, "atomic_write", fail)
    with pytest.raises(OSError):
        remove_job(job, folder)
    assert snapshot(folder) == before


ROUTE_LINE = '@app.route("/run-fx-rates", methods=["POST"])\n'
OTHER_ROUTE = (
    '\n\n@app.route("/run-other", methods=["POST"])\ndef run_other():\n'
    "    from scripts.batch.fx_rates import fx_rates\n\n    return jsonify(fx_rates())\n"
)
REFUSALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "imported-by-another-route": (
        lambda f: _edit(f, "\n\nif __name__", OTHER_ROUTE + "\n\nif __name__"),
        "other code imports scripts.batch.fx_rates ('from scripts.batch.fx_rates import fx_rates')",
    ),
    "imported-at-module-level": (
        lambda f: _edit(f, "\nlogs.setup()", "from scripts.batch import fx_rates\n\nlogs.setup()"),
        "other code imports scripts.batch.fx_rates",
    ),
    "several-paths": (
        lambda f: _edit(f, ROUTE_LINE, ROUTE_LINE + '@app.route("/run-fx-rates-old")\n'),
        "run_fx_rates() also serves /run-fx-rates-old",
    ),
    "two-functions": (
        lambda f: _edit(
            f,
            ROUTE_LINE,
            '@app.get("/run-fx-rates")\ndef peek():\n    return ""\n\n\n' + ROUTE_LINE,
        ),
        "is served by 2 functions (peek(), run_fx_rates())",
    ),
    "function-used-elsewhere": (
        lambda f: _edit(
            f, "\nif __name__", 'app.add_url_rule("/x", view_func=run_fx_rates)\n\n\nif __name__'
        ),
        "run_fx_rates is used elsewhere in the file (name run_fx_rates)",
    ),
    "url-for": (
        lambda f: _edit(
            f, '        "/health",\n', '        "/health",\n        url("run_fx_rates"),\n'
        ),
        "run_fx_rates is used elsewhere in the file",
    ),
    "runs-another-module": (
        lambda f: _edit(f, "scripts.batch.fx_rates import", "scripts.batch.other import"),
        "run_fx_rates() runs scripts.batch.other, not scripts.batch.fx_rates",
    ),
    "entry-lists-other-routes": (
        lambda f: _edit(f, '"/run-fx-rates",\n', '{"paths": ["/run-fx-rates", "/run-b"]},\n'),
        "the entry for /run-fx-rates also lists /run-b",
    ),
    "other-file-imports": (
        lambda f: _write(f, "scripts/batch/report.py", "from scripts.batch.fx_rates import X\n"),
        "imports scripts.batch.fx_rates, which destroy would delete",
    ),
    "relative-import": (
        lambda f: _write(f, "scripts/batch/report.py", "from . import fx_rates\n"),
        "report.py: imports scripts.batch.fx_rates",
    ),
    "import-module-by-name": (
        lambda f: _write(
            f,
            "scripts/jobs.py",
            'import importlib\nimportlib.import_module("scripts.batch.fx_rates")\n',
        ),
        "jobs.py: imports scripts.batch.fx_rates",
    ),
    "unparsable-file-naming-it": (
        lambda f: _write(f, "scripts/broken.py", "import scripts.batch.fx_rates\ndef (:\n"),
        "broken.py: imports scripts.batch.fx_rates",
    ),
    "endpoint-not-python": (
        lambda f: _edit(f, "\n\nif __name__", "\n\ndef broken(:\n\n\nif __name__"),
        "is not valid Python",
    ),
}


def _edit(folder: Path, old: str, new: str) -> None:
    path = folder / "batch_endpoint.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _write(folder: Path, relative: str, text: str) -> None:
    (folder / relative).write_text(text)


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_change_nothing(fx_service, case):
    folder, job = fx_service
    edit, words = REFUSALS[case]
    edit(folder)
    before = snapshot(folder)
    for dry_run in (True, False):
        with pytest.raises(BadInput) as info:
            remove_job(job, folder, dry_run=dry_run)
        assert words in str(info.value) and info.value.fix
    assert snapshot(folder) == before


def test_a_route_step_2_did_not_write_is_removed_with_its_comments(service_dir):
    """The seed's hand-written /run-legacy: its entry's comment goes, the file compiles."""
    original = (ENDPOINTS / "seed_style.py").read_text()
    (service_dir / "batch_endpoint.py").write_text(original)
    legacy = service_dir / "scripts" / "batch" / "legacy.py"
    legacy.write_text("def do_something(dry_run=False):\n    return {}\n")
    plan = remove_job(Job(name="legacy"), service_dir)
    actions = [(c.action, c.detail) for c in plan.changes]
    assert actions == [
        ("delete", "run_legacy()"),
        ("delete", ""),
        ("delete", "edited by you"),
        ("no change", "not found"),
    ]
    start = original.index("\n\n\n@app.route('/run-legacy'")
    expected = original[:start] + original[original.index("\n\n\nif __name__") :]
    expected = expected.replace("        '/run-legacy',  # the old nightly job\n", "")
    assert endpoint(service_dir).decode() == expected
    assert not legacy.exists()


def test_a_section_comment_above_the_route_stays(fx_service):
    folder, job = fx_service
    _edit(folder, "\n\n\n" + ROUTE_LINE, "\n\n\n# Jobs.\n\n\n# Collects FX rates.\n" + ROUTE_LINE)
    plan = remove_job(job, folder)
    assert plan.changes[0].detail == "run_fx_rates() and the comment above it"
    text = endpoint(folder).decode()
    assert '"status": "ok"})\n\n\n# Jobs.\n\n\nif __name__ == "__main__":' in text
    assert "Collects" not in text


def test_crlf_file_keeps_its_line_ends(specs, built, tmp_path):
    original = ORIGINALS["crlf-seed_style"]
    jobs = specs("seed_style")
    folder = work_copy(built(original, jobs), tmp_path)
    remove_job(jobs[1].job, folder)
    result = endpoint(folder)
    assert result.count(b"\n") == result.count(b"\r\n")
    assert result == endpoint(built(original, [jobs[0], jobs[2]]))


def test_the_service_still_runs_the_other_job(specs, built, tmp_path):
    """Under a real gunicorn: the kept job answers 200, the removed route 404."""
    jobs = specs("template")
    folder = work_copy(built(TEMPLATE, jobs[:2]), tmp_path)
    remove_job(jobs[0].job, folder)
    with localserve.serving(folder) as base:
        kept = requests.post(f"{base}{jobs[1].job.route}", json={"dry_run": True}, timeout=10)
        gone = requests.post(f"{base}{jobs[0].job.route}", timeout=10)
        index = requests.get(f"{base}/", timeout=10).json()
    assert kept.status_code == 200, kept.text
    assert kept.json()["status"] == "success"
    assert gone.status_code == 404
    assert index["endpoints"] == ["/health", jobs[1].job.route]
