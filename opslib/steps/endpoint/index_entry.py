"""The index() entry step 2 adds for a route, shaped like the entries already there.

The user's list keeps its layout: the new entry takes the form of its neighbours (a path
string, or a dict with the same keys), the file's own quote character, and a comment after the
old last entry stays on that entry's line.
"""

from __future__ import annotations

import json

import libcst as cst

from opslib.spec.model import Spec
from opslib.steps.endpoint.source import HTTP_METHODS, EndpointFile, strings


def append_entry(index_list: cst.List, spec: Spec, info: EndpointFile) -> cst.List:
    """index_list plus the new route, shaped like the entries already there.

    A comment after the old last entry stays on that entry's line; the new entry takes the
    old last entry's place before the closing bracket.
    """
    new_value = _entry_like(index_list, spec, info)
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


def _entry_like(index_list: cst.List, spec: Spec, info: EndpointFile) -> cst.BaseExpression:
    """A string like the last entry, a copy of a structured entry with a path, or a plain path."""
    route, method = spec.job.route, spec.schedule.http_method
    sample = index_list.elements[-1].value if index_list.elements else None
    if isinstance(sample, cst.SimpleString):
        text = f"{method} {route}" if " /" in str(sample.evaluated_value) else route
        return cst.SimpleString(_literal(text, sample.value[-1]))
    if sample is not None and any(text.startswith("/") for text in strings(sample)):
        return sample.visit(_EntryCopy(spec))
    return cst.SimpleString(_literal(route, quote_of(info)))


class _EntryCopy(cst.CSTTransformer):
    """Copy a structured entry so that none of the copied entry's own text carries over."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec, self.keys = spec, [""]

    def visit_DictElement(self, node: cst.DictElement) -> bool:
        key = node.key
        self.keys.append(str(key.evaluated_value) if isinstance(key, cst.SimpleString) else "")
        return True

    def leave_DictElement(
        self, original: cst.DictElement, updated: cst.DictElement
    ) -> cst.DictElement:
        self.keys.pop()
        return updated.with_changes(key=original.key)

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.keys.append(node.keyword.value if node.keyword else "")
        return True

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        self.keys.pop()
        return updated

    def leave_SimpleString(
        self, original: cst.SimpleString, updated: cst.SimpleString
    ) -> cst.SimpleString:
        text = _entry_text(str(original.evaluated_value), self.keys[-1], self.spec)
        return updated.with_changes(value=_literal(text, original.value[-1]))


def _entry_text(value: str, key: str, spec: Spec) -> str:
    job, method = spec.job, spec.schedule.http_method
    verb, _, rest = value.partition(" ")
    if value.startswith("/"):
        return job.route
    if verb.upper() in HTTP_METHODS and rest.startswith("/"):
        return f"{method} {job.route}"
    if value.upper() in HTTP_METHODS:
        return method
    if "desc" in key.lower():
        return job.description
    return job.name if key.lower() in ("name", "job", "id") else ""


def _literal(text: str, quote: str) -> str:
    """A Python string literal for `text` in the given quote character."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]  # escapes \\, ", and control characters
    if quote == "'":
        body = body.replace('\\"', '"').replace("'", "\\'")
    return f"{quote}{body}{quote}"


def quote_of(info: EndpointFile) -> str:
    """The file's own string quote, so the new route looks like the rest."""
    counts = {"'": 0, '"': 0}

    class Count(cst.CSTVisitor):
        def visit_SimpleString(self, node: cst.SimpleString) -> None:
            quote = node.value.lstrip("rbuRBU")[:1]
            if quote in counts and not node.value.lstrip("rbuRBU").startswith(quote * 3):
                counts[quote] += 1

    info.module.visit(Count())
    return "'" if counts["'"] > counts['"'] else '"'
