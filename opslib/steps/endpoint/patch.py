"""Step 2 — patch the endpoint: add the job's route to batch_endpoint.py and register it in index().

libcst edits the user's file in place, so formatting and comments elsewhere stay as they were.
Rules: a route already serving the same job is left alone (no change, byte-identical file); a
route path or function name that exists with another target is a conflict, never overwritten;
the result must compile, and it is written atomically or not at all.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from opslib.core.errors import BadInput
from opslib.core.fsutil import atomic_write
from opslib.core.plan import Change, Plan
from opslib.spec.model import Spec
from opslib.steps.endpoint.imports import ensure_imports
from opslib.steps.endpoint.index_entry import append_entry, quote_of
from opslib.steps.endpoint.source import (
    EndpointFile,
    JobImport,
    Route,
    job_imports,
    parse,
)
from opslib.steps.scaffold import render

ENDPOINT_FILE = "batch_endpoint.py"


@dataclass
class Patch:
    """The planned edit: the new source (None when nothing changes) and its plan."""

    path: Path
    plan: Plan
    new_source: str | None


def plan(spec: Spec, service_dir: Path) -> Patch:
    """Compute the patched source without writing anything."""
    path = Path(service_dir) / ENDPOINT_FILE
    info = load(path)
    result = Plan()
    module = _plan_route(path, info, spec, result)
    module = _plan_entry(path, info, spec, module, result)
    if not result.pending:
        return Patch(path, result, None)
    new_source = ensure_imports(module, spec.job.overlap).code
    _verify(path, new_source, spec)
    return Patch(path, result, new_source)


def patch_endpoint(spec: Spec, service_dir: Path, *, dry_run: bool = False) -> Plan:
    """Plan, then (unless dry_run) add the job's route; a Cloud Run job needs none."""
    if spec.job.effective_runtime == "job":
        detail = f"runtime job: runs as python -m scripts.batch.{spec.job.module}; no route"
        return Plan([Change("endpoint", "route (none)", "no change", detail=detail)])
    return _patch_endpoint(spec, service_dir, dry_run=dry_run)


def _patch_endpoint(spec: Spec, service_dir: Path, *, dry_run: bool = False) -> Plan:
    """Write batch_endpoint.py atomically (all checks first)."""
    patch = plan(spec, service_dir)
    if patch.new_source is not None and not dry_run:
        atomic_write(patch.path, patch.new_source)
    return patch.plan


def load(path: Path) -> EndpointFile:
    """The endpoint file parsed; step 2 and the checklist lint both read it this way.

    newline="" keeps CRLF line ends for libcst to reproduce.
    """
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return parse(handle.read())
    except FileNotFoundError:
        raise BadInput(
            str(path), "not found", "pass the folder that holds batch_endpoint.py (--service-dir)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(str(path), f"cannot be read as UTF-8 text: {exc}", "fix the file") from None
    except cst.ParserSyntaxError as exc:
        raise BadInput(
            f"{path}:{exc.raw_line}",
            f"is not valid Python: {exc.message}",
            "fix the syntax error, then run the step again",
        ) from None


def _plan_route(path: Path, info: EndpointFile, spec: Spec, result: Plan) -> cst.Module:
    """The module with the job's route added, unless a route already serves the same job."""
    job = spec.job
    existing = info.route_for(job.route)
    if existing is not None:
        _check_same_target(path, existing, spec)
        result.add(Change("endpoint", f"route {job.route}", "no change", detail=existing.name))
        return info.module
    _check_free_name(path, info, spec)
    _require_helpers(path, info, spec)
    result.add(Change("endpoint", f"route {job.route}", "create", detail=f"{job.view}()"))
    return _add_route(info.module, info, spec)


def _plan_entry(
    path: Path, info: EndpointFile, spec: Spec, module: cst.Module, result: Plan
) -> cst.Module:
    """The module with the route listed in index(), unless it is listed already."""
    route = spec.job.route
    if info.is_registered(route):
        result.add(Change("endpoint", f"index() entry {route}", "no change"))
        return module
    if info.index_list is None:
        raise BadInput(
            str(path),
            "index() has no endpoint list to register the route in",
            "give index() a list, e.g. endpoints = ['/health'], and return it",
        )
    result.add(Change("endpoint", f"index() entry {route}", "create"))
    entry = append_entry(info.index_list, spec, info)
    return module.deep_replace(info.index_list, entry)


def _verify(path: Path, new_source: str, spec: Spec) -> None:
    """The patched file must compile, serve the route and list it, or nothing is written."""
    try:
        compile(new_source, str(path), "exec")
    except SyntaxError as exc:  # pragma: no cover - a libcst bug would land here
        raise BadInput(
            str(path),
            f"the patched file does not compile: {exc}",
            "report this; the file was not changed",
        ) from None
    after = parse(new_source)
    route = spec.job.route
    if after.route_for(route) is None or not after.is_registered(route):
        raise BadInput(
            str(path),
            f"step 2 could not register {route} in index()'s list (its entries are not plain "
            f"strings or dicts with a path); the file was not changed",
            f"add '{route}' to index()'s list by hand, then run step 2 again",
        )


def _check_same_target(path: Path, route: Route, spec: Spec) -> None:
    """An existing route must run this job, with this method, through the name step 1 writes."""
    imports = job_imports(route.function)
    target, wanted = (imports[0] if imports else None), f"scripts.batch.{spec.job.module}"
    if target is None or target.module != wanted:
        raise BadInput(
            f"{path}: route {spec.job.route}",
            f"already exists and runs {target.module if target else 'no imported job'} in "
            f"{route.name}(), not {wanted}",
            "rename job.name in the parameters file, or remove the old route by hand",
        )
    _check_methods(path, route, spec)
    _check_imported_name(path, route, target, spec)


def _check_methods(path: Path, route: Route, spec: Spec) -> None:
    method = spec.schedule.http_method
    served = set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())
    if method not in served:
        raise BadInput(
            f"{path}: route {spec.job.route}",
            f"already exists in {route.name}() for {', '.join(route.methods)}, but "
            f"schedule.http_method is {method}: Scheduler's calls would get 405",
            f"change {route.name}()'s methods to ['{method}'], or set schedule.http_method: "
            f"{route.methods[0]}",
        )


def _check_imported_name(path: Path, route: Route, target: JobImport, spec: Spec) -> None:
    """The route imports what step 1 writes, or what the (hand-written) job module defines."""
    job = spec.job
    expected = job.class_name if job.pattern == "class" else job.module
    if not target.names or expected in target.names:
        return
    module_file = path.parent.joinpath(*target.module.split(".")).with_suffix(".py")
    if set(target.names) <= _top_level_names(module_file):
        return
    raise BadInput(
        f"{path}: route {job.route}",
        f"already exists and imports {', '.join(target.names)} from {target.module}, but step 1 "
        f"writes {expected} there ({job.pattern} pattern)",
        f"import {expected} in {route.name}(), set job.pattern to the route's pattern, "
        "or remove the old route by hand",
    )


def _top_level_names(module_file: Path) -> set[str]:
    """Names a job module defines at top level; empty if it is missing or does not parse."""
    try:
        tree = ast.parse(module_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _check_free_name(path: Path, info: EndpointFile, spec: Spec) -> None:
    if spec.job.view in info.names:
        other = next((r.path for r in info.routes if r.name == spec.job.view), None)
        what = f"serves {other}" if other else "is defined for something else"
        raise BadInput(
            f"{path}: {spec.job.view}",
            f"{spec.job.view} already exists and {what}; step 2 would shadow it",
            "rename job.name, or rename the existing function",
        )


def _require_helpers(path: Path, info: EndpointFile, spec: Spec) -> None:
    needed = ["app", "logger", "make_response"]
    if spec.job.pattern == "class":
        needed += ["run_async", "get_test_mode"]
    missing = [name for name in needed if name not in info.names]
    if missing:
        raise BadInput(
            str(path),
            f"lacks {', '.join(missing)}, which the route template calls",
            "keep the service template's helpers (see service/batch_endpoint.py)",
        )
    logs = path.parent / "scripts" / "common" / "logs.py"
    if not logs.is_file():
        raise BadInput(
            str(logs),
            "not found; routes log through job_run()",
            "copy service/scripts/common/ from the opslib repository",
        )


def _add_route(module: cst.Module, info: EndpointFile, spec: Spec) -> cst.Module:
    code = render(
        "route.py.j2",
        job=spec.job,
        q=quote_of(info),
        method=spec.schedule.http_method,
        overlap=spec.job.overlap,
        deadline=int(spec.schedule.attempt_deadline),
    )
    function = cst.parse_module(code).body[0]
    assert isinstance(function, cst.FunctionDef)
    blank = cst.EmptyLine(indent=False, whitespace=cst.SimpleWhitespace(""))
    function = function.with_changes(leading_lines=[blank, blank])
    body = list(module.body)
    at = _insert_at(module, info)
    if at < len(body) and not body[at].leading_lines:
        body[at] = body[at].with_changes(leading_lines=[blank, blank])
    body.insert(at, function)
    return module.with_changes(body=body)


def _insert_at(module: cst.Module, info: EndpointFile) -> int:
    """After the last route; else before `if __name__ == ...`; else at the end."""
    last_route = max((module.body.index(r.function) for r in info.routes), default=-1)
    if last_route >= 0:
        return last_route + 1
    for i, statement in enumerate(module.body):
        if isinstance(statement, cst.If) and "__name__" in cst.Module([]).code_for_node(
            statement.test
        ):
            return i
    return len(module.body)
