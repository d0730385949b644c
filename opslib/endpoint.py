"""Step 2 — patch the endpoint: add the job's route to batch_endpoint.py and register it in index().

libcst edits the user's file in place, so formatting and comments elsewhere stay as they were.
Rules: a route already serving the same job is left alone (no change, byte-identical file); a
route path or function name that exists with another target is a conflict, never overwritten;
the result must compile, and it is written atomically or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from opslib.endpoint_source import EndpointFile, Route, parse
from opslib.errors import BadInput
from opslib.fsutil import atomic_write
from opslib.plan import Change, Plan
from opslib.scaffold import render
from opslib.spec import Spec

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
    source = _read(path)
    try:
        info = parse(source)
    except cst.ParserSyntaxError as exc:
        raise BadInput(
            f"{path}:{exc.raw_line}",
            f"is not valid Python: {exc.message}",
            "fix the syntax error, then run step 2 again",
        ) from None
    job, result = spec.job, Plan()
    module = info.module
    existing = info.route_for(job.route)
    if existing is not None:
        _check_same_target(path, existing, spec)
        result.add(Change("endpoint", f"route {job.route}", "no change", detail=existing.name))
    else:
        _check_free_name(path, info, spec)
        _require_helpers(path, info, spec)
        module = _add_route(module, info, spec)
        result.add(Change("endpoint", f"route {job.route}", "create", detail=f"{job.view}()"))
    if info.is_registered(job.route):
        result.add(Change("endpoint", f"index() entry {job.route}", "no change"))
    else:
        if info.index_list is None:
            raise BadInput(
                str(path),
                "index() has no endpoint list to register the route in",
                "give index() a list, e.g. endpoints = ['/health'], and return it",
            )
        module = module.deep_replace(info.index_list, _append_entry(info.index_list, spec))
        result.add(Change("endpoint", f"index() entry {job.route}", "create"))
    if not result.pending:
        return Patch(path, result, None)
    module = _ensure_imports(module, spec)
    new_source = module.code
    try:
        compile(new_source, str(path), "exec")
    except SyntaxError as exc:  # pragma: no cover - a libcst bug would land here
        raise BadInput(
            str(path),
            f"the patched file does not compile: {exc}",
            "report this; the file was not changed",
        ) from None
    return Patch(path, result, new_source)


def patch_endpoint(spec: Spec, service_dir: Path, *, dry_run: bool = False) -> Plan:
    """Plan, then (unless dry_run) write batch_endpoint.py atomically."""
    patch = plan(spec, service_dir)
    if patch.new_source is not None and not dry_run:
        atomic_write(patch.path, patch.new_source)
    return patch.plan


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(
            str(path), "not found", "pass the service folder with --service-dir"
        ) from None


def _target_module(route: Route) -> str | None:
    """The `scripts...` module a route imports its job from."""
    found: list[str] = []

    class Find(cst.CSTVisitor):
        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            if node.module is not None:
                found.append(cst.Module([]).code_for_node(node.module))

    route.function.visit(Find())
    return next((m for m in found if m.startswith("scripts")), found[0] if found else None)


def _check_same_target(path: Path, route: Route, spec: Spec) -> None:
    target, wanted = _target_module(route), f"scripts.batch.{spec.job.module}"
    if target != wanted:
        raise BadInput(
            f"{path}: route {spec.job.route}",
            f"already exists and runs {target or 'no imported job'} in {route.name}(), "
            f"not {wanted}",
            "rename job.name in the parameters file, or remove the old route by hand",
        )


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


def _quote(info: EndpointFile) -> str:
    """The file's own string quote, so the new route looks like the rest."""
    counts = {"'": 0, '"': 0}

    class Count(cst.CSTVisitor):
        def visit_SimpleString(self, node: cst.SimpleString) -> None:
            quote = node.value.lstrip("rbuRBU")[:1]
            if quote in counts and not node.value.lstrip("rbuRBU").startswith(quote * 3):
                counts[quote] += 1

    info.module.visit(Count())
    return "'" if counts["'"] > counts['"'] else '"'


def _add_route(module: cst.Module, info: EndpointFile, spec: Spec) -> cst.Module:
    code = render("route.py.j2", job=spec.job, q=_quote(info), method=spec.schedule.http_method)
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


def _append_entry(index_list: cst.List, spec: Spec) -> cst.List:
    """index_list plus the new route, shaped like the entries already there.

    A comment after the old last entry stays on that entry's line; the new entry takes the
    old last entry's place before the closing bracket.
    """
    new_value = _entry_like(index_list, spec)
    elements = list(index_list.elements)
    if not elements:
        return index_list.with_changes(elements=[cst.Element(new_value)])
    last, separator = elements[-1], _separator(index_list)
    # libcst keeps a comment after the last entry (and its newline) before the `]`.
    closing = index_list.rbracket.whitespace_before
    elements[-1] = last.with_changes(comma=_keep_comment(separator, closing))
    return index_list.with_changes(
        elements=[*elements, cst.Element(new_value, comma=last.comma)],
        rbracket=index_list.rbracket.with_changes(whitespace_before=_without_comment(closing)),
    )


def _separator(index_list: cst.List) -> cst.Comma:
    """The comma-and-whitespace that stands between two entries of this list."""
    elements = index_list.elements
    if len(elements) > 1 and isinstance(elements[-2].comma, cst.Comma):
        comma = elements[-2].comma
        return comma.with_changes(whitespace_after=_without_comment(comma.whitespace_after))
    opening = index_list.lbracket.whitespace_after
    if isinstance(opening, cst.ParenthesizedWhitespace):
        return cst.Comma(whitespace_after=_without_comment(opening))
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _keep_comment(separator: cst.Comma, closing: cst.BaseParenthesizableWhitespace) -> cst.Comma:
    gap = separator.whitespace_after
    if isinstance(closing, cst.ParenthesizedWhitespace) and isinstance(
        gap, cst.ParenthesizedWhitespace
    ):
        return separator.with_changes(
            whitespace_after=gap.with_changes(first_line=closing.first_line)
        )
    return separator


def _without_comment(space: cst.BaseParenthesizableWhitespace) -> cst.BaseParenthesizableWhitespace:
    if isinstance(space, cst.ParenthesizedWhitespace):
        return space.with_changes(first_line=cst.TrailingWhitespace())
    return space


def _entry_like(index_list: cst.List, spec: Spec) -> cst.BaseExpression:
    """A string entry in the list's quote style (and 'METHOD /path' form if used)."""
    route, method = spec.job.route, spec.schedule.http_method
    sample = index_list.elements[-1].value if index_list.elements else None
    if sample is not None and not isinstance(sample, cst.SimpleString):
        return _replace_strings(sample, route, method)
    quote = sample.value[-1] if isinstance(sample, cst.SimpleString) else '"'
    text = route
    if isinstance(sample, cst.SimpleString) and " /" in str(sample.evaluated_value):
        text = f"{method} {route}"
    return cst.SimpleString(f"{quote}{text}{quote}")


def _replace_strings(sample: cst.BaseExpression, route: str, method: str) -> cst.BaseExpression:
    """A copy of a structured entry (e.g. a dict) with its path and method replaced."""

    class Replace(cst.CSTTransformer):
        def leave_SimpleString(self, original: cst.SimpleString, updated: cst.SimpleString):
            value = str(original.evaluated_value)
            quote = original.value[-1]
            if value.startswith("/"):
                return updated.with_changes(value=f"{quote}{route}{quote}")
            if value.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
                return updated.with_changes(value=f"{quote}{method}{quote}")
            return updated

    return sample.visit(Replace())


def _ensure_imports(module: cst.Module, spec: Spec) -> cst.Module:
    """The names the route uses: flask's request and jsonify, and job_run."""
    module = _ensure_from_import(module, "flask", ["jsonify", "request"])
    return _ensure_from_import(module, "scripts.common.logs", ["job_run"])


def _ensure_from_import(module: cst.Module, source: str, names: list[str]) -> cst.Module:
    body = list(module.body)
    last_import = -1
    for i, statement in enumerate(body):
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Import | cst.ImportFrom):
                last_import = i
            if (
                isinstance(small, cst.ImportFrom)
                and small.module is not None
                and cst.Module([]).code_for_node(small.module) == source
                and not isinstance(small.names, cst.ImportStar)
            ):
                have = {alias.evaluated_name for alias in small.names}
                missing = [n for n in names if n not in have]
                if not missing:
                    return module
                new_small = small.with_changes(names=_with_aliases(list(small.names), missing))
                body[i] = statement.deep_replace(small, new_small)
                return module.with_changes(body=body)
    line = cst.parse_statement(f"from {source} import {', '.join(names)}\n")
    body.insert(last_import + 1, line)
    return module.with_changes(body=body)


def _with_aliases(aliases: list[cst.ImportAlias], missing: list[str]) -> list[cst.ImportAlias]:
    """Add names to an import in isort's order, reusing the import's own separators."""
    last_comma = aliases[-1].comma
    separator = (
        aliases[0].comma
        if len(aliases) > 1 and isinstance(aliases[0].comma, cst.Comma)
        else cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    )
    merged = aliases + [cst.ImportAlias(cst.Name(name)) for name in missing]
    merged.sort(key=lambda a: (_type_rank(a.evaluated_name), a.evaluated_name))
    return [a.with_changes(comma=separator) for a in merged[:-1]] + [
        merged[-1].with_changes(comma=last_comma)
    ]


def _type_rank(name: str) -> int:
    """isort's order-by-type: CONSTANTS, then Classes, then functions."""
    if name.isupper() and len(name) > 1:
        return 0
    return 1 if name[:1].isupper() else 2
