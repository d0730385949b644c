"""Reading a Flask endpoint file with libcst: its routes, its index() list, its names.

Shared by step 2 (which patches the file) and the checklist lint (which only reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

ROUTE_METHODS = ("route", "post", "get", "put", "patch", "delete")

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass
class Route:
    """One Flask view function and the path it serves."""

    path: str
    function: cst.FunctionDef
    methods: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.function.name.value


@dataclass
class EndpointFile:
    """What step 2 and the lint need to know about an endpoint module."""

    module: cst.Module
    routes: list[Route] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    index_list: cst.List | None = None

    def route_for(self, path: str) -> Route | None:
        return next((r for r in self.routes if r.path == path), None)

    def registered(self) -> list[str]:
        """The strings in index()'s endpoint list (paths, or 'METHOD /path' entries)."""
        if self.index_list is None:
            return []
        found: list[str] = []
        for element in self.index_list.elements:
            for node in strings(element.value):
                found.append(node)
        return found

    def is_registered(self, path: str) -> bool:
        return any(text == path or text.endswith(f" {path}") for text in self.registered())


@dataclass(frozen=True)
class JobImport:
    """An import of job code: `scripts...`, except the service's own `scripts.common`."""

    module: str
    names: tuple[str, ...]  # what `from MODULE import ...` imports; () for `import MODULE`
    bound: tuple[str, ...]  # how code refers to each: its alias, else its (dotted) name
    node: cst.CSTNode


def is_job_module(module: str) -> bool:
    """Why: `scripts.common` is the service's shared code, imported eagerly on purpose."""
    parts = module.split(".")
    return parts[0] == "scripts" and parts[1:2] != ["common"]


def dotted(node: cst.CSTNode) -> str:
    """Source text of a (dotted) name, e.g. `scripts.batch.x`."""
    return cst.Module([]).code_for_node(node)


def job_imports(node: cst.CSTNode) -> list[JobImport]:
    """Every job import inside `node`, in source order."""
    found: list[JobImport] = []

    class Find(cst.CSTVisitor):
        def visit_ImportFrom(self, imp: cst.ImportFrom) -> None:
            if imp.module is None or isinstance(imp.names, cst.ImportStar):
                return
            module = dotted(imp.module)
            if is_job_module(module):
                names = tuple(a.evaluated_name for a in imp.names)
                bound = tuple(a.evaluated_alias or a.evaluated_name for a in imp.names)
                found.append(JobImport(module, names, bound, imp))

        def visit_Import(self, imp: cst.Import) -> None:
            for alias in imp.names:
                module = alias.evaluated_name
                if is_job_module(module):
                    bound = alias.evaluated_alias or module
                    found.append(JobImport(module, (), (bound,), imp))

    node.visit(Find())
    return found


def strings(node: cst.CSTNode) -> list[str]:
    """Every string literal value inside `node`."""
    values: list[str] = []

    class Collect(cst.CSTVisitor):
        def visit_SimpleString(self, string: cst.SimpleString) -> None:
            value = string.evaluated_value
            values.append(value if isinstance(value, str) else value.decode())

    node.visit(Collect())
    return values


def route_of(function: cst.FunctionDef) -> Route | None:
    """The route a decorated function serves, if it is a Flask view."""
    for decorator in function.decorators:
        call = decorator.decorator
        if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)):
            continue
        verb = call.func.attr.value
        if verb not in ROUTE_METHODS or not call.args:
            continue
        first = call.args[0].value
        if not isinstance(first, cst.SimpleString):
            continue
        methods: tuple[str, ...] = ("GET",) if verb == "route" else (verb.upper(),)
        for arg in call.args[1:]:
            if arg.keyword and arg.keyword.value == "methods":
                methods = tuple(m.upper() for m in strings(arg.value))
        return Route(str(first.evaluated_value), function, methods)
    return None


def parse(source: str) -> EndpointFile:
    """Parse an endpoint module; raises libcst.ParserSyntaxError on bad Python."""
    module = cst.parse_module(source)
    info = EndpointFile(module)
    index_fn: cst.FunctionDef | None = None
    module_lists: dict[str, cst.List] = {}
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef | cst.ClassDef):
            info.names.add(statement.name.value)
        if isinstance(statement, cst.FunctionDef):
            route = route_of(statement)
            if route:
                info.routes.append(route)
            if statement.name.value == "index" or (route and route.path == "/"):
                index_fn = index_fn or statement
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                info.names.update(_assigned_names(small))
                for name, value in _list_assignments(small):
                    module_lists[name] = value
    if index_fn is not None:
        info.index_list = _find_index_list(index_fn, module_lists)
    return info


def _assigned_names(small: cst.BaseSmallStatement) -> set[str]:
    names: set[str] = set()
    if isinstance(small, cst.Assign):
        for target in small.targets:
            if isinstance(target.target, cst.Name):
                names.add(target.target.value)
    elif isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(
        small.names, cst.ImportStar
    ):
        for alias in small.names:
            bound = alias.asname.name if alias.asname else alias.name
            if isinstance(bound, cst.Name):
                names.add(bound.value)
            elif isinstance(bound, cst.Attribute):
                names.add(cst.Module([]).code_for_node(bound).split(".")[0])
    return names


def _list_assignments(node: cst.CSTNode) -> list[tuple[str, cst.List]]:
    if isinstance(node, cst.Assign) and isinstance(node.value, cst.List):
        return [
            (t.target.value, node.value) for t in node.targets if isinstance(t.target, cst.Name)
        ]
    if (
        isinstance(node, cst.AnnAssign)
        and isinstance(node.value, cst.List)
        and isinstance(node.target, cst.Name)
    ):
        return [(node.target.value, node.value)]
    return []


def _find_index_list(
    index_fn: cst.FunctionDef, module_lists: dict[str, cst.List]
) -> cst.List | None:
    """index()'s endpoint list: `endpoints = [...]`, `{"endpoints": [...]}`, or a module list."""
    found: list[cst.List] = []

    class Find(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            for name, value in _list_assignments(node):
                if "endpoint" in name.lower():
                    found.append(value)

        def visit_DictElement(self, node: cst.DictElement) -> None:
            key = node.key
            if isinstance(key, cst.SimpleString) and "endpoint" in str(key.evaluated_value):
                if isinstance(node.value, cst.List):
                    found.append(node.value)
                elif isinstance(node.value, cst.Name) and node.value.value in module_lists:
                    found.append(module_lists[node.value.value])

        def visit_Name(self, node: cst.Name) -> None:
            if "endpoint" in node.value.lower() and node.value in module_lists:
                found.append(module_lists[node.value])

    index_fn.visit(Find())
    return found[0] if found else None
