"""Read Cloud Logging filter text: the syntax tree, and the literal values (times, durations,
numbers, RE2 regexes) that `filter` compiles into a predicate.

Grammar (cloud.google.com/logging/docs/view/logging-query-language), loosest binding first:

    query   = conj
    conj    = disj { ["AND"] disj }          adjacent terms are ANDed, across newlines too
    disj    = unary { "OR" unary }           OR binds tighter than AND: the opposite of SQL
    unary   = ("NOT" | "-") unary | term     NOT binds tightest
    term    = "(" conj ")" | name "(" args ")" | path op value | path ":*" | literal
    value   = literal | "(" value-conj ")"   same grammar; f=(a OR b) means f=a OR f=b

Only uppercase AND, OR and NOT are operators (lowercase ones are search words); `--` starts a
comment that runs to the end of the line. A path is dotted words and quoted strings, written
without spaces: `labels."run.googleapis.com/x"`, `jsonPayload."@type"`.

Over 400 lines on purpose: the tokenizer, the grammar and the literal readers are one
recursive-descent parser; the literal readers are the grammar's leaves and share its errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 100  # parentheses and NOTs; bounds recursion when compiling and matching
SUPPORTED_FUNCTIONS = ("log_id", "search")
UNSUPPORTED_FUNCTIONS = ("sample", "ip_in_net", "cast", "regexp_extract", "source")


class FilterError(ValueError):
    """A filter that cannot be used; the message goes to the API client in a 400."""


def where(text: str, pos: int) -> str:
    """Point at a character the way an editor does, so a client can find the mistake."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column} (position {pos})"


@dataclass(frozen=True, slots=True)
class Lit:
    """A value as written; `quoted` tells `NULL_VALUE` from `"NULL_VALUE"`."""

    text: str
    quoted: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Path:
    """A field path split into components, quotes removed."""

    parts: tuple[str, ...]
    pos: int

    def dotted(self) -> str:
        """The path as a user would write it, for error messages."""
        return ".".join(p if re.fullmatch(r"\w+", p) else f'"{p}"' for p in self.parts)


@dataclass(frozen=True, slots=True)
class Cmp:
    """`path op value`; op ":*" (presence) has no value."""

    path: Path
    op: str
    value: Lit | None


@dataclass(frozen=True, slots=True)
class Global:
    """A bare value: true when any field of the entry has it."""

    value: Lit


@dataclass(frozen=True, slots=True)
class Call:
    """A supported function call: log_id(lit) or search([path,] lit)."""

    name: str
    path: Path | None
    value: Lit
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Cmp | Global | Call | Not | And | Or


class Token(NamedTuple):
    kind: str  # word string op ( ) , * - AND OR NOT end
    text: str
    start: int
    end: int


_LEX = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--[^\n]*)
      | (?P<string>"(?:[^"\\]|\\[\s\S])*")
      | (?P<op>=~|!~|!=|<=|>=|=|<|>|:)
      | (?P<punct>[(),*-])
      | (?P<word>[^\s"()=!<>:,*~]+)""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_TERM_START = frozenset({"word", "string", "(", "-", "NOT"})


def _unescape(body: str) -> str:
    """Undo \\" and \\\\; keep other escapes (\\d, \\.) so regex strings survive unchanged."""
    return re.sub(r"\\([\s\S])", lambda m: _ESCAPES.get(m[1], m[0]), body)


def tokenize(text: str) -> list[Token]:
    """Split the filter into tokens, dropping spaces and comments."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _LEX.match(text, pos)
        if m is None:
            what = "unterminated string" if text[pos] == '"' else f"unexpected {text[pos]!r}"
            raise FilterError(f"Unparseable filter: {what} at {where(text, pos)}")
        kind, raw = m.lastgroup or "", m[0]
        if kind == "string":
            tokens.append(Token(kind, _unescape(raw[1:-1]), pos, m.end()))
        elif kind == "word" and raw in ("AND", "OR", "NOT"):
            tokens.append(Token(raw, raw, pos, m.end()))
        elif kind in ("op", "word"):
            tokens.append(Token(kind, raw, pos, m.end()))
        elif kind == "punct":
            tokens.append(Token(raw, raw, pos, m.end()))
        pos = m.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


def parse(text: str) -> Node | None:
    """The filter's tree, or None for a filter with nothing in it (which matches everything)."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(
            f"Filter is {len(text)} characters long; the limit is {MAX_FILTER_CHARS}."
        )
    return _Parser(text).query()


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.in_value = 0
        self.depth = 0

    def fail(self, message: str, pos: int) -> FilterError:
        return FilterError(f"Unparseable filter: {message} at {where(self.text, pos)}")

    def descend(self, tok: Token) -> None:
        """Refuse absurd nesting rather than overflow Python's stack on every entry."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"Unsupported filter: nesting deeper than {MAX_DEPTH} parentheses or NOTs at "
                f"{where(self.text, tok.start)} is not supported by localcloud."
            )

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, kind: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise self.fail(f"expected {kind!r}, found {_show(tok)}", tok.start)
        return tok

    def query(self) -> Node | None:
        if self.peek().kind == "end":
            return None
        node = self.conj(self.term)
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(f"unexpected {_show(tok)}", tok.start)
        return node

    def conj(self, leaf: Callable[[], Node]) -> Node:
        items = [self.disj(leaf)]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.take()
            elif kind not in _TERM_START:
                break
            items.append(self.disj(leaf))
        return items[0] if len(items) == 1 else And(tuple(items))

    def disj(self, leaf: Callable[[], Node]) -> Node:
        items = [self.unary(leaf)]
        while self.peek().kind == "OR":
            self.take()
            items.append(self.unary(leaf))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def unary(self, leaf: Callable[[], Node]) -> Node:
        tok = self.peek()
        if tok.kind == "NOT" or (tok.kind == "-" and not self.negative_literal_ahead()):
            self.descend(self.take())
            node = Not(self.unary(leaf))
            self.depth -= 1
            return node
        return leaf()

    def negative_literal_ahead(self) -> bool:
        """Inside a value list, `-5` is a number, not NOT 5."""
        nxt = self.peek(1)
        return bool(self.in_value) and nxt.kind == "word" and nxt.start == self.peek().end

    def term(self) -> Node:
        tok = self.peek()
        if tok.kind == "(":
            self.descend(self.take())
            node = self.conj(self.term)
            self.expect(")")
            self.depth -= 1
            return node
        if tok.kind == "word" and self.peek(1).kind == "(" and self.peek(1).start == tok.end:
            return self.call()
        if tok.kind not in ("word", "string"):
            raise self.fail(f"expected a comparison or a value, found {_show(tok)}", tok.start)
        group = self.adjacent_group()
        if self.peek().kind == "op":
            return self.comparison(self.path(group))
        if len(group) > 1:
            raise self.fail(f"expected an operator, found {_show(self.peek())}", self.peek().start)
        return Global(Lit(tok.text, tok.kind == "string", tok.start))

    def adjacent_group(self) -> list[Token]:
        """Words and strings written with no space between them: one path like a."b".c."""
        group = [self.take()]
        while self.peek().kind in ("word", "string") and self.peek().start == group[-1].end:
            group.append(self.take())
        return group

    def path(self, group: list[Token]) -> Path:
        parts: list[str] = []
        need_dot = False
        for tok in group:
            text = tok.text
            if tok.kind == "string":
                if need_dot:
                    raise self.fail("expected '.' between field names", tok.start)
                parts.append(text)
                need_dot = True
                continue
            if need_dot:
                if not text.startswith("."):
                    raise self.fail("expected '.' between field names", tok.start)
                text = text[1:]
            need_dot = not text.endswith(".")
            pieces = text.removesuffix(".").split(".")
            if "" in pieces:
                raise self.fail(f"empty field name in {tok.text!r}", tok.start)
            parts.extend(pieces)
        if not need_dot:
            raise self.fail("field path ends with '.'", group[-1].start)
        return Path(tuple(parts), group[0].start)

    def comparison(self, path: Path) -> Node:
        op = self.take().text
        if op == ":" and self.peek().kind == "*":
            self.take()
            return Cmp(path, ":*", None)
        return self.value(path, op)

    def value(self, path: Path, op: str) -> Node:
        if self.peek().kind != "(":
            return Cmp(path, op, self.literal(op))
        self.descend(self.take())
        self.in_value += 1
        node = self.conj(lambda: self.value(path, op))
        self.in_value -= 1
        self.expect(")")
        self.depth -= 1
        return node

    def literal(self, after: str) -> Lit:
        tok = self.take()
        if tok.kind == "string":
            return Lit(tok.text, True, tok.start)
        nxt = self.peek()
        if tok.kind == "word":
            if nxt.kind == "(" and nxt.start == tok.end:
                self.check_function(tok)
                raise self.fail(f"function {tok.text}() cannot be used as a value", tok.start)
            return Lit(tok.text, False, tok.start)
        if tok.kind == "-" and nxt.kind == "word" and nxt.start == tok.end:
            self.take()
            return Lit("-" + nxt.text, False, tok.start)
        if tok.kind == "*":
            raise self.fail("'*' is only allowed as FIELD:*", tok.start)
        raise self.fail(f"expected a value after {after!r}, found {_show(tok)}", tok.start)

    def check_function(self, tok: Token) -> str:
        """Refuse functions localcloud cannot evaluate instead of guessing their result."""
        name = tok.text.lower()
        if name in UNSUPPORTED_FUNCTIONS:
            raise FilterError(
                f"Unsupported filter: function {tok.text}() at {where(self.text, tok.start)} is "
                f"not supported by localcloud; supported functions: log_id(), SEARCH()."
            )
        if name not in SUPPORTED_FUNCTIONS:
            raise self.fail(f"unknown function {tok.text}()", tok.start)
        return name

    def call(self) -> Node:
        tok = self.take()
        name = self.check_function(tok)
        self.expect("(")
        path = None
        if name == "search" and self.peek().kind in ("word", "string"):
            nxt = self.peek(1)
            joined = nxt.kind in ("word", "string") and nxt.start == self.peek().end
            if nxt.kind == "," or joined:
                path = self.path(self.adjacent_group())
                self.expect(",")
        value = self.literal(f"{tok.text}(")
        self.expect(")")
        return Call(name, path, value, tok.start)


# --- literal values ---------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:?[0-9]{2}))?"
)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def timestamp_nanos(value: str) -> int:
    """RFC3339 (Z, +hh:mm, +hhmm) or a bare date as epoch nanoseconds, exact to the nanosecond."""
    m = _TIMESTAMP.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise FilterError(
            f"Invalid timestamp {value!r}: use RFC3339 such as "
            '"2026-11-28T04:02:23.514722Z" or a date such as "2026-11-28".'
        )
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        seconds = 86_400 * (date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY)
        if hour is not None:
            time(int(hour), int(minute), int(second))
            offset = 0 if zone in "Zz" else int(zone[0] + "1") * _zone_seconds(zone[1:])
            seconds += int(hour) * 3600 + int(minute) * 60 + int(second) - offset
    except ValueError as exc:
        raise FilterError(f"Invalid timestamp {value!r}: {exc}.") from None
    return seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)


def _zone_seconds(hhmm: str) -> int:
    hours, minutes = int(hhmm[:2]), int(hhmm[-2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset {hhmm} out of range")
    return hours * 3600 + minutes * 60


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_SECOND = 1_000_000_000
_UNIT_NANOS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": _SECOND, "m": 60 * _SECOND}
_UNIT_NANOS["h"] = 3600 * _SECOND


@lru_cache(maxsize=1 << 16)
def duration_nanos(text: str) -> int | None:
    """'0.123s', '999ms', '1m30s' as nanoseconds (Decimal keeps them exact); None if malformed."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.removeprefix("-").removeprefix("+")
    total, pos = Decimal(0), 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None
        total += Decimal(m[1]) * _UNIT_NANOS[m[2]]
        pos = m.end()
    return sign * int(total) if body else None


_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_number(text: str) -> int | float | None:
    """int64 fields travel as strings ("494"); filters write numbers bare or quoted."""
    if not _NUMBER.fullmatch(text.strip()):
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


_NOT_RE2 = {
    "(?=": "lookahead",
    "(?!": "lookahead",
    "(?<=": "lookbehind",
    "(?<!": "lookbehind",
    "(?>": "atomic groups",
    "(?(": "conditionals",
    "(?P=": "backreferences",
}


def re2_to_python(pattern: str) -> str:
    """Refuse what RE2 lacks, so a regex that Google would reject never works here."""
    out, i = [], 0
    while i < len(pattern):
        pair = pattern[i : i + 2]
        if pair[0] == "\\" and len(pair) == 2:
            if pair[1] in "123456789":
                raise ValueError(f"backreference {pair} is not RE2 syntax")
            if pair[1] in "pP":
                raise ValueError(f"Unicode classes ({pair}{{...}}) are not supported by localcloud")
            if pair[1] == "Z":
                raise ValueError("\\Z is not RE2 syntax; RE2 writes end of text as \\z")
            out.append("\\Z" if pair == "\\z" else pair)
            i += 2
            continue
        for prefix, what in _NOT_RE2.items():
            if pattern.startswith(prefix, i):
                raise ValueError(f"{what} {prefix!r} is not RE2 syntax")
        out.append(pattern[i])
        i += 1
    return "".join(out)


def _show(tok: Token) -> str:
    return "end of filter" if tok.kind == "end" else repr(tok.text)
