"""The seed's endpoint checklist, checked on every job route (hand-written ones too).

1. registered in index()'s endpoint list; 2. the job is imported inside the route (lazy, for
cold starts); 3. the body is read with `request.get_json(silent=True) or {}` (an empty or
non-JSON body must not fail); 4. the job's result carries processed and error counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
import pandas as pd
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from opslib.steps.endpoint.patch import ENDPOINT_FILE, load
from opslib.steps.endpoint.source import EndpointFile, JobImport, Route, dotted, job_imports

COLUMNS = ["file", "line", "route", "check", "finding", "fix"]
ERROR_KEYS = ("errors", "error_count", "errors_count", "failed")
JOB_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


Add = Callable[[cst.CSTNode, str, str, str], None]


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
    info = load(path)
    wrapper = MetadataWrapper(info.module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    context = _Context(
        service_dir=Path(service_dir),
        parents=wrapper.resolve(ParentNodeProvider),
        module_imports=_module_level_job_imports(info.module),
        request_names=_request_names(info.module),
    )
    findings: list[Finding] = []
    for route in info.routes:
        if not _is_job_route(route):
            continue

        def add(node: cst.CSTNode, check: str, finding: str, fix: str, route=route) -> None:
            line = positions[node].start.line
            findings.append(Finding(str(path), line, route.path, check, finding, fix))

        _check_route(info, route, context, add)
    return pd.DataFrame([f.__dict__ for f in findings], columns=COLUMNS)


@dataclass
class _Context:
    """What every route's checks need to know about the file around it."""

    service_dir: Path
    parents: Mapping[cst.CSTNode, cst.CSTNode]
    module_imports: dict[str, cst.CSTNode]
    request_names: set[str]


def _check_route(info: EndpointFile, route: Route, context: _Context, add: Add) -> None:
    if not info.is_registered(route.path):
        add(
            route.function,
            "registered in index()",
            f"{route.path} is not in index()'s list",
            f"add '{route.path}' to the endpoints list in index()",
        )
    _check_import(route, context.module_imports, add)
    _check_body(route, context, add)
    _check_counts(route, context.service_dir, add)


def _is_job_route(route: Route) -> bool:
    return bool(JOB_METHODS & set(route.methods)) or route.path.startswith("/run-")


def _module_level_job_imports(module: cst.Module) -> dict[str, cst.CSTNode]:
    """Names bound at module level by job imports (scripts.*, except scripts.common)."""
    names: dict[str, cst.CSTNode] = {}
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for found in job_imports(statement):
                names.update({name.split(".")[0]: found.node for name in found.bound})
    return names


def _request_names(module: cst.Module) -> set[str]:
    """Names flask's request goes by in this file: `request`, and any `request as X`."""
    names = {"request"}
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if (
                    isinstance(small, cst.ImportFrom)
                    and small.module is not None
                    and dotted(small.module) == "flask"
                    and not isinstance(small.names, cst.ImportStar)
                ):
                    names.update(
                        a.evaluated_alias
                        for a in small.names
                        if a.evaluated_name == "request" and a.evaluated_alias
                    )
    return names


def _check_import(route: Route, module_imports: dict[str, cst.CSTNode], add: Add) -> None:
    if job_imports(route.function):
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


def _check_body(route: Route, context: _Context, add: Add) -> None:
    """`request.json` and bare `get_json()` fail on an empty or non-JSON body."""
    fix = "read it as: data = request.get_json(silent=True) or {}"

    class Find(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if not _is_request(node.value, context.request_names):
                return
            if node.attr.value == "json":
                add(node, "empty body", "request.json fails (415/400) on an empty body", fix)
            elif node.attr.value == "get_json":
                problem = _get_json_problem(node, context.parents)
                if problem:
                    add(node, "empty body", problem, fix)

    route.function.visit(Find())


def _is_request(node: cst.BaseExpression, names: set[str]) -> bool:
    if isinstance(node, cst.Name):
        return node.value in names
    return isinstance(node, cst.Attribute) and dotted(node) == "flask.request"


def _get_json_problem(node: cst.Attribute, parents: Mapping) -> str | None:
    call = parents[node]
    if not isinstance(call, cst.Call):
        return None
    silent = any(a.keyword and a.keyword.value == "silent" and _is_true(a.value) for a in call.args)
    if not silent:
        return "get_json() without silent=True fails on a non-JSON body"
    if not _or_default(call, parents):
        return "get_json(silent=True) is None for an empty body; no `or {}`"
    return None


def _is_true(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "True"


def _or_default(call: cst.Call, parents: Mapping) -> bool:
    """`get_json(...) or {}`, or `x = get_json(...)` followed at once by `x = x or {}`."""
    parent = parents.get(call)
    if isinstance(parent, cst.BooleanOperation):
        return isinstance(parent.operator, cst.Or) and parent.left is call
    if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1):
        return False
    target = parent.targets[0].target
    line = parents.get(parent)
    block = parents.get(line) if line is not None else None
    if not isinstance(target, cst.Name) or not hasattr(block, "body"):
        return False
    body = list(block.body)  # type: ignore[union-attr]
    at = body.index(line)
    following = body[at + 1] if at + 1 < len(body) else None
    return _is_or_default_of(following, target.value)


def _is_or_default_of(statement: cst.CSTNode | None, name: str) -> bool:
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1):
        return False
    small = statement.body[0]
    return (
        isinstance(small, cst.Assign)
        and [dotted(t.target) for t in small.targets] == [name]
        and isinstance(small.value, cst.BooleanOperation)
        and isinstance(small.value.operator, cst.Or)
        and dotted(small.value.left) == name
    )


def _check_counts(route: Route, service_dir: Path, add: Add) -> None:
    """The job's returned dicts must carry processed and error counts."""
    imports = job_imports(route.function)
    if not imports:
        return
    module, path, names = _job_source(imports[0], route.function, service_dir)
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


def _job_source(
    found: JobImport, function: cst.FunctionDef, service_dir: Path
) -> tuple[str, Path, list[str]]:
    """The job's module, its file, and the names the route uses from it."""
    module, names = found.module, list(found.names)
    if names and not _file_of(service_dir, module).is_file():
        module, names = f"{module}.{names[0]}", []  # `from scripts.batch import x`: x is a module
    if not names:  # a module import: the names are the attributes the route reads from it
        names = _attributes_of(function, found.bound[0])
    return module, _file_of(service_dir, module), names


def _file_of(service_dir: Path, module: str) -> Path:
    return service_dir.joinpath(*module.split(".")).with_suffix(".py")


def _attributes_of(function: cst.FunctionDef, prefix: str) -> list[str]:
    found: list[str] = []

    class Find(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            if dotted(node.value) == prefix:
                found.append(node.attr.value)

    function.visit(Find())
    return found


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
        keys = _dict_keys(node.value)
        if keys is not None:
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.dicts[target.target.value] = keys

    def visit_Return(self, node: cst.Return) -> None:
        keys = _dict_keys(node.value) if node.value is not None else None
        if keys is not None:
            self.results.append(keys)
        elif isinstance(node.value, cst.Name) and node.value.value in self.dicts:
            self.results.append(self.dicts[node.value.value])


def _dict_keys(node: cst.BaseExpression) -> set[str] | None:
    """The keys of a `{...}` literal or a `dict(key=...)` call; None for anything else."""
    if isinstance(node, cst.Dict):
        return {
            str(e.key.evaluated_value)
            for e in node.elements
            if isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString)
        }
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "dict":
        return {a.keyword.value for a in node.args if a.keyword is not None}
    return None
