"""The layout stays true: opslib's rooms import only rooms below them, and service/ never opslib.

The rooms, lowest first, are the subpackages of `opslib/` (docs/architecture.md draws them).
Every import counts, a lazy one inside a function and a TYPE_CHECKING one too: a type-only
import upward is still a dependency a reader has to follow. The checker reads the source with
`ast`, so a forbidden import fails here even on a path no other test runs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a room may import itself and any room before it, never one after it.
ROOMS = ("core", "spec", "localcloud", "cloud", "steps", "doctor", "fleet", "notebook", "cli")
# One code path for both targets: only the client factory/session and the CLI's `opslib
# localcloud` commands know localcloud exists; a step reaches it through `opslib.cloud`.
ONLY_FROM = {"localcloud": ("cloud", "cli")}
# A room that may import fewer rooms than those below it. localcloud is an independent witness
# of opslib's mistakes: it checks requests with its own rules (written from Google's documented
# behaviour), never with opslib.spec's, which would make it agree with opslib by construction.
ONLY_IMPORTS = {"localcloud": ("core",)}


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.imported}: {self.rule}"


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module `path` imports (absolute names; relative ones resolved against `package`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from opslib import steps` names a room as much as `import opslib.steps` does.
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def room_of(module: str) -> str | None:
    """`opslib.steps.deploy.service` -> `steps`; None outside opslib or for opslib itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "opslib" and len(parts) > 1 else None


def package_of(path: Path, root: Path) -> str:
    """The package a relative import in `path` starts from (its folder, for __init__ too)."""
    return ".".join(path.relative_to(root).parts[:-1])


def check_opslib(root: Path) -> list[Violation]:
    """Imports that go up (or sideways into an unknown room) under root/opslib."""
    violations = []
    for path in sorted((root / "opslib").rglob("*.py")):
        relative = path.relative_to(root)
        mine = room_of(".".join((*relative.parent.parts, relative.stem)))
        if relative == Path("opslib/__init__.py"):  # a docstring only: it imports nothing
            for line, module in imported_modules(path, "opslib"):
                if module.startswith("opslib"):
                    rule = "opslib/__init__.py imports nothing, so `import opslib` stays cheap"
                    violations.append(Violation(str(relative), line, module, rule))
            continue
        if mine not in ROOMS:
            rule = f"every module lives in one of the rooms {', '.join(ROOMS)} (add it there)"
            violations.append(Violation(str(relative), 1, "-", rule))
            continue
        for line, module in imported_modules(path, package_of(path, root)):
            theirs = room_of(module)
            if theirs is None or theirs == mine:
                continue
            below = ONLY_IMPORTS.get(mine, ROOMS[: ROOMS.index(mine)])
            if theirs not in below:
                rule = f"{mine} may import only {', '.join(below) or 'nothing from opslib'}"
                violations.append(Violation(str(relative), line, module, rule))
            elif mine not in ONLY_FROM.get(theirs, (mine,)):
                rule = f"only {' and '.join(ONLY_FROM[theirs])} import {theirs}; go through cloud"
                violations.append(Violation(str(relative), line, module, rule))
    return violations


def check_service(root: Path) -> list[Violation]:
    """service/ is what ships in the container: it never imports opslib (not installed there)."""
    violations = []
    for path in sorted((root / "service").rglob("*.py")):
        for line, module in imported_modules(path, "service"):
            if module == "opslib" or module.startswith("opslib."):
                rule = "service/ runs in the container without opslib; copy what it needs"
                violations.append(Violation(str(path.relative_to(root)), line, module, rule))
    return violations


def test_opslib_imports_go_down_only():
    violations = check_opslib(ROOT)
    assert not violations, "imports against the layout:\n" + "\n".join(map(str, violations))


def test_service_never_imports_opslib():
    violations = check_service(ROOT)
    assert not violations, "\n".join(map(str, violations))


def test_ls_opslib_shows_the_rooms_and_each_says_what_it_owns_and_may_import():
    entries = {p.name for p in (ROOT / "opslib").iterdir() if p.name != "__pycache__"}
    assert entries == {*ROOMS, "__init__.py"}, "a new top-level module belongs in a room"
    for room in ROOMS:
        init = ROOT / "opslib" / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "Owns" in doc and "May import" in doc, f"{init}: say what it owns and may import"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "service").mkdir(exist_ok=True)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # localcloud reaching up into a step
        (
            {"opslib/localcloud/run/backend.py": "from opslib.steps.deploy import service\n"},
            "opslib/localcloud/run/backend.py:1 imports opslib.steps.deploy.service",
        ),
        # localcloud borrowing opslib's own rules: it would then agree with opslib's mistakes
        (
            {"opslib/localcloud/scheduler/rules.py": "from opslib.spec import cron\n"},
            "opslib/localcloud/scheduler/rules.py:1 imports opslib.spec.cron: "
            "localcloud may import only core",
        ),
        # ... lazily, inside a function, too
        (
            {"opslib/localcloud/run/jobs.py": "def f():\n    from opslib.spec.rules import x\n"},
            "opslib/localcloud/run/jobs.py:2 imports opslib.spec.rules.x: "
            "localcloud may import only core",
        ),
        # a step importing the notebook machinery, lazily inside a function
        (
            {"opslib/steps/scaffold.py": "def f():\n    from opslib.notebook import widgets\n"},
            "opslib/steps/scaffold.py:2 imports opslib.notebook.widgets",
        ),
        # step 5 calling the doctor (which imports the steps): the cycle this layout removed
        (
            {"opslib/steps/verify/service.py": "from opslib import doctor\n"},
            "opslib/steps/verify/service.py:1 imports opslib.doctor",
        ),
        # a relative import going up two levels into the doctor
        (
            {"opslib/steps/verify/job.py": "from ...doctor import diagnose\n"},
            "opslib/steps/verify/job.py:1 imports opslib.doctor",
        ),
        # the bottom room importing anything of opslib
        (
            {"opslib/core/plan.py": "import opslib.spec.model\n"},
            "opslib/core/plan.py:1 imports opslib.spec.model: core may import only nothing",
        ),
        # a step talking to localcloud directly instead of through opslib.cloud's clients
        (
            {"opslib/steps/logs.py": "from opslib.localcloud import control\n"},
            "opslib/steps/logs.py:1 imports opslib.localcloud.control: only cloud and cli",
        ),
        # a module outside every room
        ({"opslib/helpers/util.py": "x = 1\n"}, "opslib/helpers/util.py:1 imports -"),
    ],
)
def test_the_checker_fails_on_a_forbidden_import(tmp_path, files, expected):
    violations = check_opslib(_tree(tmp_path, files))
    assert any(str(v).startswith(expected) for v in violations), violations


def test_the_checker_allows_imports_downward(tmp_path):
    files = {
        "opslib/doctor/facts.py": "from opslib.steps import logs\nfrom opslib.cloud import x\n",
        "opslib/localcloud/scheduler/rules.py": "from opslib.core import errors\n",
        "opslib/cli/main.py": "from opslib.notebook import runner\n",
        "opslib/steps/deploy/service.py": "from opslib.steps.endpoint import source\n",
    }
    assert check_opslib(_tree(tmp_path, files)) == []


def test_the_checker_fails_when_service_imports_opslib(tmp_path):
    root = _tree(tmp_path, {"service/scripts/batch/fx.py": "from opslib.spec import cron\n"})
    assert [str(v) for v in check_service(root)] == [
        "service/scripts/batch/fx.py:1 imports opslib.spec.cron: "
        "service/ runs in the container without opslib; copy what it needs"
    ]


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\s]+)`", text)


def test_the_architecture_page_names_modules_that_exist():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for token in _backticked(page):  # a path: from the repository root or from opslib/
        if token.endswith((".py", ".j2")) or token.rstrip("/").count("/") >= 1:
            path = re.sub(r"<\w+>", "*", token).rstrip("/")  # service/scripts/batch/<job>.py
            if path.endswith("..."):
                continue
            globs = (path, f"{path}.*")  # notebooks/01_write_function
            if not any(
                hit for base in (ROOT, ROOT / "opslib") for g in globs for hit in base.glob(g)
            ):
                missing.append(token)
    for row in re.findall(r"^\| `opslib/(\w+)/` \|(.*)$", page, re.M):  # the rooms' table
        room, cells = row
        names = _names_in(ROOT / "opslib" / room)
        for token in _backticked(cells.rsplit("|", 2)[0]):
            words = [w for w in re.split(r"[/ ]", token) if w]
            if not all(any(fnmatch(n, w) for n in names) for w in words):
                missing.append(f"{room}: {token}")
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def _names_in(room: Path) -> set[str]:
    """Module and package names under a room, and the names its modules define at top level."""
    names = {p.stem for p in room.rglob("*.py")} | {p.name for p in room.rglob("*") if p.is_dir()}
    for path in room.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
    return names


def test_the_readme_and_docs_name_modules_that_exist():
    """`opslib.a.b` and `opslib/a/b.py` in README.md, docs/ and the notebooks resolve."""
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ROOT.glob("notebooks/*.ipynb")]
    missing = []
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for name in set(re.findall(r"\bopslib(?:\.[a-z_]+)+", text)):
            parts = name.split(".")
            module = ROOT.joinpath(*parts)
            if module.is_dir() or module.with_suffix(".py").is_file():
                continue
            owner = ROOT.joinpath(*parts[:-1]).with_suffix(".py")  # opslib.x.module.attribute
            if not (owner.is_file() and parts[-1] in _names_in_file(owner)):
                missing.append(f"{path.name}: {name}")
        for relative in set(re.findall(r"\bopslib/[a-z_/]+\.py", text)):
            if not (ROOT / relative).is_file():
                missing.append(f"{path.name}: {relative}")
    assert not missing, f"names that are not in the tree: {sorted(missing)}"


def _names_in_file(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
