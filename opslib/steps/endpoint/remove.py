"""Destroy, the inverse of steps 1-2: remove a job's route, index() entry, module and test.

libcst removes exactly what step 2 added (the decorated function with the blank lines above
it, the list entry with its separator), so adding a job and removing it gives the file back
byte for byte, except for the imports step 2 added, which stay because other routes use them.
Removal is refused, with nothing changed, when the route or the module is tied to other code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from opslib.core.errors import BadInput
from opslib.core.fsutil import atomic_write
from opslib.core.plan import Change, Plan
from opslib.spec.model import Job, Spec
from opslib.steps.endpoint.patch import ENDPOINT_FILE, load
from opslib.steps.endpoint.source import (
    HTTP_METHODS,
    ROUTE_METHODS,
    EndpointFile,
    JobImport,
    Route,
    job_imports,
    parse,
    strings,
)
from opslib.steps.scaffold import GeneratedFile, job_files

STEP = "destroy"
_SKIP_DIRS = {"__pycache__", "node_modules", "venv", "site-packages"}


@dataclass
class Removal:
    """What destroy would do: the endpoint's new source (None: unchanged) and files to delete."""

    path: Path
    plan: Plan
    new_source: str | None
    delete: list[Path]


def plan_removal(job: Job, service_dir: Path) -> Removal:
    """Compute the removal without changing anything; refuses when removing would break code."""
    service_dir = Path(service_dir)
    path = service_dir / ENDPOINT_FILE
    info = load(path)
    result = Plan()
    route = _served_route(path, info, job)
    if route is not None:
        _check_route(path, info, route, job)
    _check_module_unused(path, info, route, job)
    module = _plan_route(info, route, job, result)
    module = _plan_entry(path, info, job, module, result)
    new_source = None if module is info.module else module.code
    if new_source is not None:
        _verify(path, info, new_source, job)
    delete = _plan_files(job, service_dir, result)
    return Removal(path, result, new_source, delete)


def remove_job(job: Job, service_dir: Path, *, dry_run: bool = False) -> Plan:
    """Plan, then (unless dry_run) write the endpoint atomically and only then delete files."""
    removal = plan_removal(job, service_dir)
    if dry_run:
        return removal.plan
    if removal.new_source is not None:
        atomic_write(removal.path, removal.new_source)
    for file in removal.delete:
        file.unlink(missing_ok=True)
    return removal.plan


def _served_route(path: Path, info: EndpointFile, job: Job) -> Route | None:
    """The one top-level function serving the job's route; two would make the intent unclear."""
    serving = [r for r in info.routes if job.route in _paths(r.function)]
    if len(serving) > 1:
        names = ", ".join(f"{r.name}()" for r in serving)
        raise BadInput(
            f"{path}: route {job.route}",
            f"is served by {len(serving)} functions ({names}); destroy removes one route",
            "merge or remove the extra functions by hand, then run destroy again",
        )
    return serving[0] if serving else None


def _paths(function: cst.FunctionDef) -> list[str]:
    """Every path a function's Flask route decorators serve."""
    found: list[str] = []
    for decorator in function.decorators:
        call = decorator.decorator
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
            first = call.args[0].value if call.args else None
            if call.func.attr.value in ROUTE_METHODS and isinstance(first, cst.SimpleString):
                found.append(str(first.evaluated_value))
    return found


def _check_route(path: Path, info: EndpointFile, route: Route, job: Job) -> None:
    """The route must serve only this path, run this job's module, and be used by nothing else."""
    where = f"{path}: route {job.route}"
    others = sorted(set(_paths(route.function)) - {job.route})
    if others:
        raise BadInput(
            where,
            f"{route.name}() also serves {', '.join(others)}; removing it would remove those too",
            f"give {', '.join(others)} a function of its own, then run destroy again",
        )
    imports = job_imports(route.function)
    if not any(_imports_job(i, job) for i in imports):
        runs = ", ".join(sorted({i.module for i in imports})) or "no job module"
        raise BadInput(
            where,
            f"{route.name}() runs {runs}, not scripts.batch.{job.module}; it is not this job's",
            "check job.name in the parameters file, or remove the route by hand",
        )
    users = _references(info.module, route.function, route.name)
    if users:
        raise BadInput(
            where,
            f"{route.name} is used elsewhere in the file ({', '.join(users)}); removing it "
            "would break that code",
            f"remove those uses of {route.name} first, then run destroy again",
        )


def _references(module: cst.Module, function: cst.FunctionDef, name: str) -> list[str]:
    """How code outside `function` refers to `name` (a call, view_func=..., url_for('...'))."""
    found: list[str] = []

    class Find(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is not function

        def visit_Name(self, node: cst.Name) -> None:
            if node.value == name:
                found.append(f"name {name}")

        def visit_SimpleString(self, node: cst.SimpleString) -> None:
            if node.evaluated_value == name:
                found.append(f"string {node.value}")

    module.visit(Find())
    return sorted(set(found))


def _imports_job(job_import: JobImport, job: Job) -> bool:
    target = f"scripts.batch.{job.module}"
    return (
        job_import.module == target
        or job_import.module.startswith(f"{target}.")
        or (job_import.module == "scripts.batch" and job.module in job_import.names)
    )


def _check_module_unused(path: Path, info: EndpointFile, route: Route | None, job: Job) -> None:
    """No code in the endpoint file but the route itself may import the module destroy deletes."""
    others = [s for s in info.module.body if route is None or s is not route.function]
    users = [i for s in others for i in job_imports(s) if _imports_job(i, job)]
    if users:
        line = cst.Module([]).code_for_node(users[0].node).strip()
        raise BadInput(
            str(path),
            f"other code imports scripts.batch.{job.module} ({line!r}); deleting the module "
            "would break it",
            "remove that import (or the route that uses it) first, then run destroy again",
        )


def _plan_route(info: EndpointFile, route: Route | None, job: Job, result: Plan) -> cst.Module:
    resource = f"route {job.route}"
    if route is None:
        result.add(Change(STEP, resource, "no change", detail=f"not in {ENDPOINT_FILE}"))
        return info.module
    module, attached = _without_function(info.module, route.function)
    detail = f"{route.name}()" + (" and the comment above it" if attached else "")
    result.add(Change(STEP, resource, "delete", detail=detail))
    return module


def _without_function(module: cst.Module, function: cst.FunctionDef) -> tuple[cst.Module, bool]:
    """The module without the function (and whether comments right above it went too)."""
    # A comment a blank line above the function heads a section, so it stays.
    lines = list(function.leading_lines)
    own = len(lines)
    while own and lines[own - 1].comment is not None:
        own -= 1
    last_comment = max((i for i, line in enumerate(lines[:own]) if line.comment), default=-1)
    kept = lines[: last_comment + 1]
    body, footer = list(module.body), list(module.footer)
    at = body.index(function)
    del body[at]
    if kept and at < len(body):
        body[at] = body[at].with_changes(leading_lines=[*kept, *body[at].leading_lines])
    elif kept:
        footer = [*kept, *footer]
    return module.with_changes(body=body, footer=footer), own < len(lines)


def _plan_entry(
    path: Path, info: EndpointFile, job: Job, module: cst.Module, result: Plan
) -> cst.Module:
    """The module without the route's index() entries (each entry, with its comment)."""
    resource, index_list = f"index entry {job.route}", info.index_list
    elements = list(index_list.elements) if index_list is not None else []
    hits = [i for i, element in enumerate(elements) if _lists(element, job.route)]
    if index_list is None or not hits:
        result.add(Change(STEP, resource, "no change", detail="not listed in index()"))
        return module
    for i in hits:
        _check_entry_alone(path, elements[i], job)
    detail = f"{len(hits)} entries" if len(hits) > 1 else ""
    result.add(Change(STEP, resource, "delete", detail=detail))
    new_list = index_list
    for i in reversed(hits):
        new_list = _without_element(new_list, i)
    return module.deep_replace(index_list, new_list)


def _lists(element: cst.BaseElement, route: str) -> bool:
    """Whether an entry names the route, as EndpointFile.is_registered reads it."""
    return any(text == route or text.endswith(f" {route}") for text in strings(element.value))


def _check_entry_alone(path: Path, element: cst.BaseElement, job: Job) -> None:
    """An entry that also lists other routes cannot go without taking them along."""
    others = [
        text
        for text in strings(element.value)
        if _is_route_text(text) and text != job.route and not text.endswith(f" {job.route}")
    ]
    if others:
        raise BadInput(
            f"{path}: index()",
            f"the entry for {job.route} also lists {', '.join(others)}",
            f"take {job.route} out of that entry by hand, then run destroy again",
        )


def _is_route_text(text: str) -> bool:
    verb, _, rest = text.partition(" ")
    return text.startswith("/") or (verb.upper() in HTTP_METHODS and rest.startswith("/"))


def _without_element(index_list: cst.List, at: int) -> cst.List:
    """Undo endpoint._append_entry: the new last entry takes back the comma and closing line."""
    elements = list(index_list.elements)
    removed = elements.pop(at)
    if not elements:
        return _emptied(index_list)
    if at < len(elements):
        return index_list.with_changes(elements=elements)
    before = elements[-1].comma
    elements[-1] = elements[-1].with_changes(comma=removed.comma)
    rbracket = index_list.rbracket
    closing = _closing(rbracket.whitespace_before, before)
    return index_list.with_changes(
        elements=elements, rbracket=rbracket.with_changes(whitespace_before=closing)
    )


def _closing(
    closing: cst.BaseParenthesizableWhitespace, comma: cst.Comma | cst.MaybeSentinel
) -> cst.BaseParenthesizableWhitespace:
    """The whitespace before `]`, carrying the comment that followed the new last entry."""
    gap = comma.whitespace_after if isinstance(comma, cst.Comma) else None
    if not isinstance(gap, cst.ParenthesizedWhitespace):
        return closing
    if isinstance(closing, cst.ParenthesizedWhitespace):
        return closing.with_changes(first_line=gap.first_line)
    if gap.first_line.comment is None:
        return closing
    return cst.ParenthesizedWhitespace(first_line=gap.first_line, indent=True)


def _emptied(index_list: cst.List) -> cst.List:
    """`[]` for a list whose only entry went, unless comments in it must stay."""
    code = cst.Module([]).code_for_node
    spaces = (index_list.lbracket.whitespace_after, index_list.rbracket.whitespace_before)
    if any("#" in code(space) for space in spaces):
        return index_list.with_changes(elements=[])
    return index_list.with_changes(
        elements=[],
        lbracket=cst.LeftSquareBracket(),
        rbracket=cst.RightSquareBracket(),
    )


def _verify(path: Path, info: EndpointFile, new_source: str, job: Job) -> None:
    """The result compiles, no longer serves or lists the route, and keeps every other route."""
    try:
        compile(new_source, str(path), "exec")
        after = parse(new_source)
    except (SyntaxError, cst.ParserSyntaxError) as exc:  # pragma: no cover - a libcst bug
        raise BadInput(
            str(path), f"the edited file does not compile: {exc}", "report this; nothing changed"
        ) from None
    kept = [r.path for r in info.routes if r.path != job.route]
    if (
        after.route_for(job.route) is not None
        or after.is_registered(job.route)
        or [r.path for r in after.routes] != kept
    ):  # pragma: no cover - a bug in the removal above would land here
        raise BadInput(
            str(path),
            f"destroy could not remove {job.route} cleanly; the file was not changed",
            f"remove {job.route}'s route and index() entry by hand",
        )


def _plan_files(job: Job, service_dir: Path, result: Plan) -> list[Path]:
    """The job module and its test, as step 1 names them; files you edited are deleted too."""
    # job_files reads only spec.job, so a Spec built around the job alone is enough here.
    generated = job_files(Spec.model_construct(job=job), service_dir)
    delete: list[Path] = []
    for label, file in zip(("module", "test"), generated, strict=True):
        resource = f"{label} {file.path.relative_to(service_dir).as_posix()}"
        if not file.path.exists() and not file.path.is_symlink():
            result.add(Change(STEP, resource, "no change", detail="not found"))
            continue
        if not file.path.is_file():
            raise BadInput(str(file.path), "is not a file", "remove it by hand if it should go")
        detail = "" if _unchanged(file) else "edited by you"
        result.add(Change(STEP, resource, "delete", detail=detail))
        delete.append(file.path)
    if generated[0].path in delete:
        _check_not_imported(job, service_dir, skip={*delete, service_dir / ENDPOINT_FILE})
    return delete


def _unchanged(file: GeneratedFile) -> bool:
    try:
        return file.path.read_text(encoding="utf-8") == file.text
    except (OSError, UnicodeDecodeError):
        return False


def _check_not_imported(job: Job, service_dir: Path, skip: set[Path]) -> None:
    """Other code in the service that imports the module would break once it is deleted."""
    target = f"scripts.batch.{job.module}"
    for file in _python_files(service_dir):
        if file in skip:
            continue
        if any(n == target or n.startswith(f"{target}.") for n in _imported(file, service_dir)):
            raise BadInput(
                str(file),
                f"imports {target}, which destroy would delete",
                "remove that import first, or keep the job",
            )


def _python_files(service_dir: Path) -> Iterator[Path]:
    for file in sorted(service_dir.rglob("*.py")):
        parts = file.relative_to(service_dir).parts[:-1]
        if not any(part.startswith(".") or part in _SKIP_DIRS for part in parts):
            yield file


def _imported(file: Path, service_dir: Path) -> list[str]:
    """Dotted names a file imports, plus its strings (importlib.import_module('...'))."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return re.findall(r"[\w.]+", text)  # cannot parse: any dotted word counts
    package = file.relative_to(service_dir).parts[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else ()
            base = ".".join([*parts, node.module] if node.module else parts)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.append(node.value)
    return names
