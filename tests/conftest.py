"""Shared fixtures: a fresh copy of the service, parameters files, a real gunicorn.

Tests never depend on what a user's own runs left in the checkout (issue 18, point 7): the
notebooks saved with outputs in JupyterLab, the quick start's parameters/<name>.yaml, the jobs
steps 1-2 wrote into service/. They read the shipped parameters files by name (`SHIPPED_PARAMS`),
work on copies of service/ as the seed ships it (`seed_service`), and check the notebooks git
holds (`indexed`). tests/test_dirty_checkout.py runs the sensitive tests in such a checkout.

It also makes the run fail when a process it started (localcloud, gunicorn, a service instance)
outlives it, or when the checkout's `git status` changed during the run: see
`pytest_sessionfinish`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"
EXAMPLE = ROOT / "parameters" / "example.yaml"
DATA = Path(__file__).resolve().parent / "data"
# The parameters files the repository ships, by name: the quick start writes the user's own
# parameters/<name>.yaml next to them, and that file must not join a fleet a test builds.
SHIPPED_PARAMS = tuple(
    ROOT / "parameters" / f"{stem}.yaml"
    for stem in ("example", "kr-prices", "monthly-report", "nightly-backfill")
)

# The service's own modules (scripts.common.http, ...) are imported by some unit tests.
sys.path.insert(0, str(SERVICE))

# Every process this run starts inherits this marker (a run nested in a test adds its own id), so
# the leak check finds them by it rather than by name. Service instances get an environment built
# from scratch; the check finds those as descendants, or by their folder under a registered state.
RUN_MARKER = "OPSLIB_TEST_RUN"
RUN_ID = uuid.uuid4().hex
os.environ[RUN_MARKER] = ",".join(filter(None, [os.environ.get(RUN_MARKER), RUN_ID]))
# The tests' localclouds go in a registry of their own, never the user's (`stop --all`).
REGISTRY_DIR = Path(tempfile.mkdtemp(prefix="opslib-test-registry-"))
# Where `seed_service` builds its copy of the seed (removed at the end of the run).
SEED_DIR = Path(tempfile.mkdtemp(prefix="opslib-test-seed-"))
os.environ["OPSLIB_REGISTRY"] = str(REGISTRY_DIR / "localclouds.json")
# How long processes stopped at the end may take to exit before they count as leaked.
LEAK_GRACE = float(os.environ.get("OPSLIB_TEST_LEAK_GRACE", "20"))


@functools.cache
def _git_checkout() -> bool:
    """Whether ROOT is a git checkout's top (not an sdist, nor a copy inside another repo)."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:  # no git
        return False
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == ROOT.resolve()


def git(*args: str) -> subprocess.CompletedProcess | None:
    """A git command in the repository, or None outside a git checkout."""
    if not _git_checkout():
        return None
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True)


def indexed(path: Path) -> bytes | None:
    """`path` as git's index holds it (committed, or staged since), None when git has no copy."""
    result = git("cat-file", "blob", f":{path.relative_to(ROOT).as_posix()}")
    return result.stdout if result is not None and result.returncode == 0 else None


def as_shipped(notebook: Path):
    """`notebook` (an nbformat node) without what a user's runs left in it: no outputs, no cell
    papermill injected, and its parameters cell as git's index holds it, since that cell is where
    a user types their answers in JupyterLab (the quick start's questions, a step's `params`).
    The other cells are the working tree's: a developer's edits to them stay under test."""
    import nbformat

    book = nbformat.read(notebook, as_version=4)
    staged = indexed(notebook)
    if staged is not None:
        committed = nbformat.reads(staged.decode(), as_version=4)
        shipped = [c.source for c in committed.cells if "parameters" in _tags(c)]
        for cell in book.cells:
            if "parameters" in _tags(cell) and len(shipped) == 1:
                cell.source = shipped[0]
    book.cells = [c for c in book.cells if "injected-parameters" not in _tags(c)]
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    book.metadata.pop("widgets", None)
    return book


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


_SEED: list[Path] = []
_SEED_LOCK = threading.Lock()


def seed_service() -> Path:
    """service/ as the seed ships it, made once per run: the working tree's service/ (so a
    developer's edits to the seed are what the tests test) without the jobs a user's steps 1-2
    wrote into it.

    The jobs go the way the product takes them out of a new service's folder
    (`opslib.steps.endpoint.folder.new_service_folder`, destroy's libcst removal of each job
    route, index() entry, module and test), then the files step 1 writes that no route names (a
    Cloud Run job's module and test) unless git tracks them. Removal keeps the imports step 2
    added, so an endpoint that is git's (committed or staged) plus those imports is git's; where
    destroy refuses to remove a job the user tied to other code, the endpoint is git's too.
    """
    with _SEED_LOCK:  # the doctor's scenarios copy it from several threads at once
        if not _SEED:
            _SEED.append(_make_seed())
        return _SEED[0]


def _make_seed() -> Path:
    from opslib.core.errors import BadInput
    from opslib.steps.endpoint.folder import COPY_IGNORE, new_service_folder
    from opslib.steps.endpoint.imports import ensure_imports

    folder = SEED_DIR / "service"
    seed = indexed(SERVICE / "batch_endpoint.py")
    try:
        new_service_folder(SERVICE, folder)
    except BadInput:  # destroy refuses (the user tied a job to other code): git's endpoint
        if seed is None:
            raise
        shutil.copytree(SERVICE, folder, ignore=COPY_IGNORE)
        (folder / "batch_endpoint.py").write_bytes(seed)
    tracked = git("ls-files", "-z", "--", "service")
    shipped = set() if tracked is None else set(tracked.stdout.decode().split("\0"))
    job_files = [
        *(folder / "scripts" / "batch").glob("*.py"),
        *(p for p in (folder / "tests").rglob("*") if p.is_file()),
    ]
    for path in job_files:
        relative = path.relative_to(folder).as_posix()
        if relative != "scripts/batch/__init__.py" and f"service/{relative}" not in shipped:
            path.unlink()
    for empty in [*sorted((folder / "tests").rglob("*"), reverse=True), folder / "tests"]:
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    endpoint = folder / "batch_endpoint.py"
    if seed is not None and seed != endpoint.read_bytes():
        import libcst

        module = libcst.parse_module(seed.decode())
        with_imports = {ensure_imports(module, overlap).code for overlap in ("allow", "skip")}
        if endpoint.read_bytes().decode() in with_imports:
            endpoint.write_bytes(seed)
    return folder


def copy_service(target: Path) -> Path:
    """A copy of service/ as the seed ships it (`seed_service`) at `target`."""
    shutil.copytree(seed_service(), target)
    return target


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    """A private copy of service/ as the seed ships it (tests never touch the repository's)."""
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


def _processes() -> dict[int, tuple[int, bytes, str, str]]:
    """Every live process: pid -> (parent pid, environ, cwd, command line)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):  # exited, only not reaped yet
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
        table[int(entry)] = (int(fields[1]), environ, cwd, cmdline.decode(errors="replace"))
    return table


def leaked_processes(run_id: str = RUN_ID) -> dict[int, str]:
    """Live processes this run started (pid -> command line), never picked by name.

    Ours: those whose environment carries `run_id`, those running in or named after a state
    directory this run's localclouds registered (an instance whose localcloud died), and every
    descendant of either or of this process.
    """
    from opslib.localcloud import control

    states = [str(state) for state in control.registered()]
    table = _processes()
    me = os.getpid()
    ancestors = {me}
    pid = me
    while pid in table and table[pid][0] not in ancestors and table[pid][0] > 0:
        pid = table[pid][0]
        ancestors.add(pid)

    def ours(environ: bytes, cwd: str, cmdline: str) -> bool:
        for variable in environ.split(b"\0"):
            name, _, value = variable.partition(b"=")
            if name == RUN_MARKER.encode() and run_id in value.decode(errors="replace").split(","):
                return True
        return any(cwd == s or cwd.startswith(s + "/") or s in cmdline for s in states)

    found = {pid for pid, (_, *seen) in table.items() if pid not in ancestors and ours(*seen)}
    roots = found | {me}
    for pid in table:  # descendants: walk each process's parents up to one of ours
        chain, parent = [], pid
        while parent in table and parent not in roots and parent not in chain:
            chain.append(parent)
            parent = table[parent][0]
        if parent in roots and pid != me:
            found.add(pid)
    return {pid: table[pid][3] for pid in sorted(found - ancestors)}


def tree_status() -> list[str] | None:
    """The checkout's `git status`, untracked files one by one, each changed file with a digest
    of its bytes (a test writing into a file the user already changed shows too); None outside
    a git checkout."""
    result = git("status", "--porcelain", "-z", "--untracked-files=all")
    if result is None:
        return None
    lines = []
    entries = iter(result.stdout.decode(errors="replace").split("\0")[:-1])
    for entry in entries:
        if entry[0] in "RC":  # a rename or copy: its source path follows
            entry += f" <- {next(entries)}"
        path = ROOT / entry[3:].split(" <- ")[0]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "-"
        lines.append(f"{entry} ({digest})")
    return lines


# What the checkout looked like before any test ran; a test that writes into it shows up here.
TREE_STATUS = tree_status()


def tree_changes() -> list[str]:
    """Lines of `tree_status` that differ from the start of the run."""
    after = tree_status()
    if TREE_STATUS is None or after is None or after == TREE_STATUS:
        return []
    before, now = set(TREE_STATUS), set(after)
    return [f"  now {line}" for line in sorted(now - before)] + [
        f"  was {line}" for line in sorted(before - now)
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process it started is still alive once everything has been stopped, or
    if the checkout's `git status` changed (a test wrote into the repository's own tree)."""
    lc = sys.modules.get("lc")
    if lc is not None:  # the shared localcloud, otherwise stopped only at exit
        lc._stop()
    deadline = time.monotonic() + LEAK_GRACE
    leaked = leaked_processes()
    while leaked and time.monotonic() < deadline:  # stopped ones may take a moment to exit
        time.sleep(0.2)
        leaked = leaked_processes()
    shutil.rmtree(REGISTRY_DIR, ignore_errors=True)
    shutil.rmtree(SEED_DIR, ignore_errors=True)
    lines = []
    if leaked:
        lines += [f"leak check: {len(leaked)} process(es) this test run started are still running:"]
        lines += [f"  pid {pid}: {cmdline.strip()[:300]}" for pid, cmdline in leaked.items()]
    changes = tree_changes()
    if changes:
        lines += [
            f"tree check: `git status` in {ROOT} changed during the run (a test wrote into the "
            "repository's tree, or someone edited it meanwhile):",
            *changes,
        ]
    if not lines:
        return
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True, bold=not line.startswith(" "))
        else:
            print(line, file=sys.stderr)
