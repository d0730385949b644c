"""What a notebook's narration quotes exists as quoted (issue 19, point 5).

Every `code span` in a notebook's markdown is read: a signature (`def ...`, `class ...`) must
be a line of opslib, the service, or a module step 1 writes for a shipped parameters file; a
path must exist under the project root or the service folder (`<name>` matches any one name);
an `opslib ...` command must parse with opslib's own CLI parser; a dotted name
(`opslib.spec.pricing`, `scripts.common.http`) must import or be a module of the service; a
`make` target must be in the Makefile. Anything else (values, keys, cron lines) is left alone.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, SERVICE, SHIPPED_PARAMS
from opslib.cli.main import build_parser
from opslib.spec.loader import load_spec
from opslib.steps.scaffold import job_files

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PLACEHOLDER = re.compile(r"<[^>]+>")


def spans(notebook: Path) -> list[str]:
    cells = nbformat.read(notebook, as_version=4).cells
    return [s for c in cells if c.cell_type == "markdown" for s in SPAN.findall(c.source)]


def _code_lines() -> set[str]:
    sources = [*(ROOT / "opslib").rglob("*.py"), *SERVICE.rglob("*.py")]
    texts = [p.read_text(encoding="utf-8") for p in sources]
    for params in SHIPPED_PARAMS:  # what step 1 writes for each shipped automation
        texts += [g.text for g in job_files(load_spec(params), SERVICE)]
    return {line.strip() for text in texts for line in text.splitlines()}


CODE = _code_lines()
COMMANDS = set(next(a for a in build_parser()._actions if a.dest == "command").choices)


def _signature(span: str) -> str | None:
    if not re.match(r"(async def|def|class) \w", span):
        return None
    return None if span.strip() in CODE else f"signature {span!r} is in no code"


def _path(span: str) -> str | None:
    if " " in span or "/" not in span or span.startswith(("/", "http", "gs://", "-")):
        return None
    if not re.fullmatch(r"[\w.<>*/-]+", span) or re.search(r"\d+ \*|^\*/", span):
        return None  # a cron step (*/30) or a value, not a path
    first = span.split("/")[0]
    known = any((base / first).is_dir() for base in (ROOT, SERVICE))
    if not known and not re.search(r"\.(py|ya?ml|ipynb|md|j2|txt|toml|json)$", span):
        return None  # roles/run.invoker, Asia/Seoul: not a path
    pattern = PLACEHOLDER.sub("*", span.rstrip("/"))
    for base in (ROOT, SERVICE):
        if any(base.glob(pattern)):
            return None
    return f"path {span!r} exists neither under the project root nor the service folder"


def _command(span: str) -> str | None:
    words = shlex.split(PLACEHOLDER.sub("X", span))
    if words[:1] == ["make"]:
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        return None if words[1] in targets else f"make has no target {words[1]!r}"
    if words[:1] != ["opslib"] or len(words) < 2:
        return None
    if len(words) == 2 and words[1] in COMMANDS:
        return None  # the command named, not used
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            build_parser().parse_args(words[1:])
    except SystemExit:
        return f"command {span!r} does not parse: {err.getvalue().strip()[-200:]}"
    return None


def _dotted(span: str) -> str | None:
    if not re.fullmatch(r"(opslib|scripts)(\.\w+)+", span):
        return None
    if span.startswith("scripts."):
        parts = span.split(".")
        for cut in range(len(parts), 0, -1):
            module = (SERVICE / "/".join(parts[:cut])).with_suffix(".py")
            if module.is_file():
                text, rest = module.read_text(), parts[cut:]
                found = not rest or re.search(rf"^(def|class) {rest[0]}\b", text, re.M)
                return None if found else f"{span!r}: {module.name} defines no {rest[0]!r}"
        return f"module {span!r} is not in the service"
    parts = span.split(".")
    for cut in range(len(parts), 0, -1):
        with contextlib.suppress(ImportError):
            thing = importlib.import_module(".".join(parts[:cut]))
            for name in parts[cut:]:
                if not hasattr(thing, name):
                    return f"{span!r}: {'.'.join(parts[:cut])} has no {name!r}"
                thing = getattr(thing, name)
            return None
    return f"{span!r} does not import"


def problems(notebook: Path) -> list[str]:
    found = []
    for span in spans(notebook):
        for check in (_signature, _command, _dotted, _path):
            problem = check(span)
            if problem:
                found.append(problem)
                break
    return found


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_what_the_narration_quotes_exists_as_quoted(notebook):
    assert problems(notebook) == []


def test_the_checks_catch_what_issue_19_found():
    """The narration 01 had: a signature no template writes; and a path and command made up."""
    assert _signature("def run(dry_run=False, **kwargs) -> dict")
    assert _signature("def fx_rates(dry_run=False):") is None
    assert _path("scripts/batch/") is None and _path("service/batch_nowhere.py")
    assert _command("opslib run parameters/<name>.yaml") is None
    assert _command("opslib deploy --no-such-flag X.yaml")
    assert _dotted("opslib.spec.pricing") is None and _dotted("opslib.spec.no_such")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_narration_is_typeset_as_maths(notebook):
    """JupyterLab's MathJax typesets text between two dollar signs in markdown ("about $15 a
    month ... the seed's $15" turned into italics): write USD, or escape the sign (\\$)."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            prose = re.sub(r"```.*?```|`[^`\n]*`", "", cell.source, flags=re.S)
            dollars = re.findall(r"(?<!\\)\$", prose)
            assert len(dollars) < 2, f"{notebook.name}: {cell.source[:200]!r}"
