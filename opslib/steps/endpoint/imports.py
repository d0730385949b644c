"""The imports a patched endpoint needs (the route's helpers), merged into the user's own
import lines in libcst so their order and formatting stay as they were."""

from __future__ import annotations

import libcst as cst

from opslib.steps.endpoint.source import dotted


def ensure_imports(module: cst.Module, overlap: str = "allow") -> cst.Module:
    """The names a route uses: flask's request and jsonify, job_run, and the lease guard."""
    module = _ensure_from_import(module, "flask", ["jsonify", "request"])
    module = _ensure_from_import(module, "scripts.common.logs", ["job_run"])
    if overlap != "allow":
        module = _ensure_from_import(module, "scripts.common", ["lease"])
    return module


def _ensure_from_import(module: cst.Module, source: str, names: list[str]) -> cst.Module:
    """Bind each of `names` from `source`, judged by the name an import binds (`x as y` is y)."""
    imports = [
        (i, small)
        for i, statement in enumerate(module.body)
        for small in _from_imports(statement, source)
    ]
    bound = {a.evaluated_alias or a.evaluated_name for _, small in imports for a in small.names}
    missing = [name for name in names if name not in bound]
    if not missing:
        return module
    body = list(module.body)
    if imports:
        i, small = imports[0]
        new_small = small.with_changes(names=_with_aliases(list(small.names), missing))
        body[i] = body[i].deep_replace(small, new_small)
    else:
        line = cst.parse_statement(f"from {source} import {', '.join(missing)}\n")
        body.insert(_last_import(module) + 1, line)
    return module.with_changes(body=body)


def _from_imports(statement: cst.CSTNode, source: str) -> list[cst.ImportFrom]:
    if not isinstance(statement, cst.SimpleStatementLine):
        return []
    return [
        small
        for small in statement.body
        if isinstance(small, cst.ImportFrom)
        and small.module is not None
        and dotted(small.module) == source
        and not isinstance(small.names, cst.ImportStar)
    ]


def _last_import(module: cst.Module) -> int:
    return max(
        (
            i
            for i, statement in enumerate(module.body)
            if isinstance(statement, cst.SimpleStatementLine)
            and any(isinstance(small, cst.Import | cst.ImportFrom) for small in statement.body)
        ),
        default=-1,
    )


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
