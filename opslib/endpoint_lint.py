"""The seed's endpoint checklist, checked on every job route (hand-written ones too).

1. registered in index()'s endpoint list; 2. the job is imported inside the route (lazy, for
cold starts); 3. the body is read with `request.get_json(silent=True) or {}` (an empty or
non-JSON body must not fail); 4. the job's result carries processed and error counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import libcst as cst
import pandas as pd
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from opslib.endpoint import ENDPOINT_FILE
from opslib.endpoint_source import Route, parse
from opslib.errors import BadInput

COLUMNS = ["file", "line", "route", "check", "finding", "fix"]
ERROR_KEYS = ("errors", "error_count", "errors_count", "failed")
JOB_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    route: str
    check: str
    finding: str
    fix: str


def lint(service_dir: Path) -> pd.DataFrame:
    """Every checklist finding in the service's endpoint file, as a table (empty when clean)."""
    path = Path(service_dir) / ENDPOINT_FILE
    try:
        info = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(
            str(path), "not found", "pass the folder that holds batch_endpoint.py"
        ) from None
    except cst.ParserSyntaxError as exc:
        raise BadInput(
            f"{path}:{exc.raw_line}",
            f"is not valid Python: {exc.message}",
            "fix the syntax error first",
        ) from None
    wrapper = MetadataWrapper(info.module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    parents = wrapper.resolve(ParentNodeProvider)
    module_imports = _module_level_job_imports(info.module)
    findings: list[Finding] = []
    for route in info.routes:
        if not _is_job_route(route):
            continue

        def add(node: cst.CSTNode, check: str, finding: str, fix: str, route=route) -> None:
            line = positions[node].start.line
            findings.append(Finding(str(path), line, route.path, check, finding, fix))

        if not info.is_registered(route.path):
            add(
                route.function,
                "registered in index()",
                f"{route.path} is not in index()'s list",
                f"add '{route.path}' to the endpoints list in index()",
            )
        _check_import(route, module_imports, add)
        _check_body(route, parents, add)
        _check_counts(route, Path(service_dir), add)
    return pd.DataFrame([f.__dict__ for f in findings], columns=COLUMNS)


def _is_job_route(route: Route) -> bool:
    return bool(JOB_METHODS & set(route.methods)) or route.path.startswith("/run-")


def _imports_in(node: cst.CSTNode) -> list[tuple[str, list[str], cst.CSTNode]]:
    found: list[tuple[str, list[str], cst.CSTNode]] = []

    class Find(cst.CSTVisitor):
        def visit_ImportFrom(self, imp: cst.ImportFrom) -> None:
            if imp.module is not None and not isinstance(imp.names, cst.ImportStar):
                module = cst.Module([]).code_for_node(imp.module)
                found.append((module, [a.evaluated_name for a in imp.names], imp))

        def visit_Import(self, imp: cst.Import) -> None:
            for alias in imp.names:
                found.append((alias.evaluated_name, [], imp))

    node.visit(Find())
    return found


def _module_level_job_imports(module: cst.Module) -> dict[str, cst.CSTNode]:
    """Names imported at module level from job modules (scripts.*, except the service's own)."""
    names: dict[str, cst.CSTNode] = {}
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for source, imported, node in _imports_in(statement):
                if source.startswith("scripts") and not source.startswith("scripts.common"):
                    names.update({name: node for name in imported})
    return names


def _check_import(route: Route, module_imports: dict[str, cst.CSTNode], add) -> None:
    inside = [m for m, _, _ in _imports_in(route.function) if m.startswith("scripts")]
    if inside:
        return
    used = {n.value for n in _names_in(route.function)}
    eager = sorted(used & set(module_imports))
    if eager:
        add(
            module_imports[eager[0]],
            "import inside the route",
            f"{', '.join(eager)} imported at module level: every cold start loads it",
            f"move the import into {route.name}()",
        )
    else:
        add(
            route.function,
            "import inside the route",
            "no job import inside the route",
            "import the job inside the route: from scripts.batch.NAME import ...",
        )


def _names_in(node: cst.CSTNode) -> list[cst.Name]:
    found: list[cst.Name] = []

    class Find(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            found.append(name)

    node.visit(Find())
    return found


def _check_body(route: Route, parents, add) -> None:
    """`request.json` and bare `get_json()` fail on an empty or non-JSON body."""
    fix = "read it as: data = request.get_json(silent=True) or {}"

    class Find(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if not (isinstance(node.value, cst.Name) and node.value.value == "request"):
                return
            attr = node.attr.value
            if attr == "json":
                add(node, "empty body", "request.json fails (415/400) on an empty body", fix)
            elif attr == "get_json":
                call = parents[node]
                if not isinstance(call, cst.Call):
                    return
                silent = any(
                    a.keyword and a.keyword.value == "silent" and _is_true(a.value)
                    for a in call.args
                )
                if not silent:
                    add(
                        node,
                        "empty body",
                        "get_json() without silent=True fails on a non-JSON body",
                        fix,
                    )
                elif not _or_default(call, parents):
                    add(
                        node,
                        "empty body",
                        "get_json(silent=True) is None for an empty body; no `or {}`",
                        fix,
                    )

    route.function.visit(Find())


def _is_true(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "True"


def _or_default(call: cst.Call, parents) -> bool:
    parent = parents.get(call)
    return (
        isinstance(parent, cst.BooleanOperation)
        and isinstance(parent.operator, cst.Or)
        and parent.left is call
    )


def _check_counts(route: Route, service_dir: Path, add) -> None:
    """The job's returned dicts must carry processed and error counts."""
    targets = [(m, names) for m, names, _ in _imports_in(route.function) if m.startswith("scripts")]
    if not targets:
        return
    module, names = targets[0]
    path = service_dir.joinpath(*module.split(".")).with_suffix(".py")
    fix = 'return {"processed": N, "errors": M, ...} from the job'
    if not path.is_file():
        add(
            route.function,
            "result counts",
            f"job module {module} not found at {path}",
            "create it with step 1 (opslib scaffold) or fix the import",
        )
        return
    returned = _returned_keys(cst.parse_module(path.read_text(encoding="utf-8")), names)
    if not returned:
        add(route.function, "result counts", f"cannot see a dict result in {module}", fix)
        return
    for keys in returned:
        missing = [k for k in ("processed",) if k not in keys]
        if not any(k in keys for k in ERROR_KEYS):
            missing.append("errors")
        if missing:
            add(
                route.function,
                "result counts",
                f"{module} returns a result without {', '.join(missing)}",
                fix,
            )
            return


def _returned_keys(module: cst.Module, names: list[str]) -> list[set[str]]:
    """Keys of the dicts that the imported function (or class's run) returns."""
    functions: list[cst.FunctionDef] = []
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value in names:
            functions.append(statement)
        if isinstance(statement, cst.ClassDef) and statement.name.value in names:
            functions += [
                s
                for s in statement.body.body
                if isinstance(s, cst.FunctionDef) and s.name.value == "run"
            ]
    finder = _ReturnedDicts()
    for function in functions:
        finder.dicts = {}
        function.visit(finder)
    return finder.results


class _ReturnedDicts(cst.CSTVisitor):
    """Dict literals returned directly or through a local name (`result = {...}; return result`)."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[set[str]] = []
        self.dicts: dict[str, set[str]] = {}

    def visit_Assign(self, node: cst.Assign) -> None:
        if isinstance(node.value, cst.Dict):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.dicts[target.target.value] = _dict_keys(node.value)

    def visit_Return(self, node: cst.Return) -> None:
        if isinstance(node.value, cst.Dict):
            self.results.append(_dict_keys(node.value))
        elif isinstance(node.value, cst.Name) and node.value.value in self.dicts:
            self.results.append(self.dicts[node.value.value])


def _dict_keys(node: cst.Dict) -> set[str]:
    return {
        str(e.key.evaluated_value)
        for e in node.elements
        if isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString)
    }
