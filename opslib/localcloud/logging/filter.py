"""Cloud Logging's filter language, compiled once into a predicate over wire-shape log entries.

`compile_filter` parses the text (`filter_parse`) and builds nested closures, so a scan of
100k entries never looks at the filter text again. The rules follow
cloud.google.com/logging/docs/view/logging-query-language:

- LogEntry schema fields (`resource.type`, `severity`, `httpRequest.status`, `trace`...) are
  *defaulted*: absent means "", 0, false or DEFAULT. Their names are case-insensitive and may be
  written in snake_case. A path outside the schema (`thud`, `textPayload.thud`) is an error.
- Keys under `jsonPayload`, `protoPayload`, `labels` and `resource.labels` are exact and may be
  *missing*: every comparison on a missing key is false, so `k!=v` is false but `NOT k=v` true.
- Strings compare case-insensitively (NFKC + casefold); `=~`/`!~` are RE2 regexes, case-sensitive
  and unanchored, run by `re` after refusing what RE2 lacks (lookaround, backreferences, \\p{}).
- `severity` compares by rank, `timestamp`/`receiveTimestamp` as instants, `httpRequest.latency`
  as a duration, int64 fields (sent as strings) as numbers. In payloads a number compares
  numerically with a numeric value; a value of another type only satisfies `!=`.
- Arrays compare element by element and any match wins. `:` is substring on strings, equality on
  other scalars, and on an object searches every value below it. A bare value does that search
  over the whole entry. `NULL_VALUE` (unquoted) matches JSON null with `=`, `:` and `!=`.
- Functions: `log_id()` and `SEARCH()` (tokens are runs of letters and digits, case-insensitive;
  a backquoted phrase must appear in order). sample(), ip_in_net(), cast(), regexp_extract() and
  source() raise FilterError ("not supported by localcloud").

Over 400 lines on purpose: the compiler is one set of closures over one value model (defaulted
and missing fields, types, arrays, NULL_VALUE); split apart, each half would need the other's
private helpers.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from opslib.localcloud.logging.filter_parse import (
    And,
    Call,
    Cmp,
    FilterError,
    Global,
    Lit,
    Node,
    Not,
    Or,
    Path,
    duration_nanos,
    parse,
    parse_number,
    re2_to_python,
    timestamp_nanos,
    where,
)

__all__ = ["FilterError", "compile_filter", "timestamp_nanos"]

Entry = dict[str, Any]
Predicate = Callable[[Entry], bool]
Test = Callable[[Any], bool]

STR, NUM, BOOL, SEV = "string", "number", "boolean", "severity"
TS, DUR, MAP = "time", "duration", "map"
MESSAGE, DYNAMIC = "message", "dynamic"
_MISSING: Any = object()
_ORDER = {"=": operator.eq, ":": operator.eq, "!=": operator.ne, "<": operator.lt,
          "<=": operator.le, ">": operator.gt, ">=": operator.ge}  # fmt: skip
_SEVERITY = {
    name: 100 * rank
    for rank, name in enumerate(
        "DEFAULT DEBUG INFO NOTICE WARNING ERROR CRITICAL ALERT EMERGENCY".split()
    )
}
_BOOLS = {"true": True, "false": False}


def _fields(**by_kind: str | dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Index fields by lowercase name without underscores, so logName, LOGNAME, log_name agree.

    Keyword = kind, value = the space-separated JSON names of that kind; a dict value is one
    message field (keyword = its name) holding its own index.
    """
    index: dict[str, tuple[str, Any]] = {}
    for kind, names in by_kind.items():
        if isinstance(names, dict):
            index[kind.lower()] = (kind, names)
        else:
            index.update((name.lower(), (name, kind)) for name in names.split())
    return index


_SCHEMA = _fields(
    string="logName textPayload insertId trace spanId",
    map="jsonPayload protoPayload labels",
    time="timestamp receiveTimestamp",
    severity="severity",
    boolean="traceSampled",
    resource=_fields(string="type", map="labels"),
    httpRequest=_fields(
        string="requestMethod requestUrl userAgent remoteIp serverIp referer protocol",
        number="requestSize status responseSize cacheFillBytes",
        boolean="cacheLookup cacheHit cacheValidatedWithOriginServer",
        duration="latency",
    ),
    operation=_fields(string="id producer", boolean="first last"),
    sourceLocation=_fields(string="file function", number="line"),
    split=_fields(string="uid", number="index totalSplits"),
)


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a path leads: the JSON keys to walk and how to compare what is found there."""

    keys: tuple[str, ...]
    kind: str


def compile_filter(text: str) -> Predicate:
    """Parse once and return a predicate, so filtering many entries never re-reads the text."""
    tree = parse(text)
    return (lambda entry: True) if tree is None else _Compiler(text).build(tree)


# --- values -----------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _cached_timestamp(value: str) -> int | None:
    """Entries without `_ts` parse each distinct timestamp string once."""
    try:
        return timestamp_nanos(value)
    except FilterError:
        return None


def _entry_number(v: Any) -> int | float | None:
    kind = type(v)
    return v if kind is int or kind is float else parse_number(v) if kind is str else None


def _entry_bool(v: Any) -> bool | None:
    return v if type(v) is bool else _BOOLS.get(v.lower()) if type(v) is str else None


def _entry_severity(v: Any) -> int | None:
    if type(v) is str:
        rank = _SEVERITY.get(v)
        return rank if rank is not None else _SEVERITY.get(v.upper())
    return v if type(v) is int else None


def _literal_severity(text: str) -> int | None:
    number = parse_number(text)
    return int(number) if number is not None else _SEVERITY.get(text.upper())


_EPOCH = datetime(1970, 1, 1)


def _entry_timestamp(v: Any) -> int | None:
    """Fast path (C fromisoformat) for the UTC 'Z' shape entries carry; else the full parser."""
    if type(v) is int:  # a precomputed `_ts`
        return v
    if type(v) is not str:
        return None
    fraction = v[20:-1]
    shape = v[-1:] == "Z" and v[10:11] == "T"
    if shape and ((v[19:20] == "." and len(fraction) <= 9 and fraction.isdigit()) or len(v) == 20):
        try:
            since = datetime.fromisoformat(v[:19]) - _EPOCH
        except ValueError:
            return None
        nanos = int(fraction.ljust(9, "0")) if fraction else 0
        return (since.days * 86_400 + since.seconds) * 1_000_000_000 + nanos
    return _cached_timestamp(v)


def _entry_duration(v: Any) -> int | None:
    return duration_nanos(v) if type(v) is str else None


# kind: (literal parser, entry converter, default for an absent field, what the literal must be)
_TYPED: dict[str, tuple[Callable[[str], Any], Callable[[Any], Any], Any, str]] = {
    NUM: (parse_number, _entry_number, 0, "a number"),
    BOOL: (lambda t: _BOOLS.get(t.lower()), _entry_bool, False, "true or false"),
    SEV: (_literal_severity, _entry_severity, 0, "a severity such as ERROR or a number"),
    TS: (_cached_timestamp, _entry_timestamp, 0, 'an RFC3339 timestamp or "YYYY-MM-DD"'),
    DUR: (duration_nanos, _entry_duration, 0, 'a duration with a unit such as "1.5s"'),
}


def _fold(text: str) -> str:
    """Case-insensitive form; NFKC only for non-ASCII text, which is rare and slower."""
    return text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()


def _text(v: Any) -> str:
    return ("true" if v else "false") if type(v) is bool else str(v)


# --- walking entries --------------------------------------------------------------------------


def _getter(keys: tuple[str, ...]) -> Callable[[Entry], Any]:
    """Fetch a nested value, or _MISSING; a list on the way fans out into a list of values."""
    if len(keys) == 1:
        (k0,) = keys
        return lambda e: e.get(k0, _MISSING)
    if len(keys) == 2:  # resource.type, httpRequest.status, jsonPayload.x: the common case
        k0, k1 = keys
        rest = keys[1:]

        def get2(e: Entry) -> Any:
            v = e.get(k0)
            if type(v) is dict:
                return v.get(k1, _MISSING)
            return _fan(v, rest) if type(v) is list else _MISSING

        return get2

    def get(e: Entry) -> Any:
        v: Any = e
        for i, key in enumerate(keys):
            if type(v) is dict:
                v = v.get(key, _MISSING)
                if v is _MISSING:
                    return v
            elif type(v) is list:
                return _fan(v, keys[i:])
            else:
                return _MISSING
        return v

    return get


def _fan(items: list[Any], keys: tuple[str, ...]) -> Any:
    get = _getter(keys)
    found = [v for x in items if type(x) is dict for v in (get(x),) if v is not _MISSING]
    return found or _MISSING


def _precomputed_ts(get: Callable[[Entry], Any]) -> Callable[[Entry], Any]:
    """The emulator stores each entry's parsed `timestamp` as `_ts`; skip parsing when it does."""

    def get_ts(e: Entry) -> Any:
        t = e.get("_ts")
        return get(e) if t is None else t

    return get_ts


def _any_item(v: Any, test: Test) -> bool:
    """Arrays compare element by element; any matching element makes the comparison true."""
    if type(v) is list:
        return any(_any_item(x, test) for x in v)
    return test(v)


def _any_leaf(v: Any, test: Test) -> bool:
    """Search every scalar under an object, as ':' on an object and bare values do."""
    if type(v) is dict:
        return any(_any_leaf(x, test) for x in v.values())
    if type(v) is list:
        return any(_any_leaf(x, test) for x in v)
    return test(v)


def _all(preds: list[Predicate]) -> Predicate:
    """AND: a short chain of closures is fastest; a long one would overflow the stack."""
    if len(preds) > 8:
        return lambda e: all(pred(e) for pred in preds)
    first, *rest = preds
    if not rest:
        return first
    others = _all(rest)
    return lambda e: first(e) and others(e)


def _some(preds: list[Predicate]) -> Predicate:
    """OR, built like AND; both short-circuit."""
    if len(preds) > 8:
        return lambda e: any(pred(e) for pred in preds)
    first, *rest = preds
    if not rest:
        return first
    others = _some(rest)
    return lambda e: first(e) or others(e)


_WORD = re.compile(r"[^\W_]+")


def _search_tokens(v: Any) -> list[str]:
    """SEARCH's tokens: every string and number below v, split at anything not a letter/digit."""
    if type(v) is dict:
        return [t for x in v.values() for t in _search_tokens(x)]
    if type(v) is list:
        return [t for x in v for t in _search_tokens(x)]
    return [] if v is None else _WORD.findall(_fold(_text(v)))


def _has_run(tokens: list[str], run: list[str]) -> bool:
    size = len(run)
    return any(tokens[i : i + size] == run for i in range(len(tokens) - size + 1))


# --- compiling ---------------------------------------------------------------------------------


class _Compiler:
    """Turns parse-tree nodes into closures; every semantic error points into the filter text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, pos: int) -> FilterError:
        return FilterError(f"Invalid filter: {message} at {where(self.text, pos)}")

    def build(self, node: Node) -> Predicate:
        return getattr(self, f"build_{type(node).__name__.lower()}")(node)

    def build_and(self, node: And) -> Predicate:
        return _all([self.build(item) for item in node.items])

    def build_or(self, node: Or) -> Predicate:
        return _some([self.build(item) for item in node.items])

    def build_not(self, node: Not) -> Predicate:
        inner = self.build(node.item)
        return lambda e: not inner(e)

    def build_global(self, node: Global) -> Predicate:
        test = self.dynamic_test(":", node.value)
        return lambda e: any(_any_leaf(v, test) for k, v in e.items() if k[:1] != "_")

    def build_call(self, node: Call) -> Predicate:
        return self.log_id(node.value) if node.name == "log_id" else self.search(node)

    def log_id(self, lit: Lit) -> Predicate:
        want = unquote(lit.text)
        encoded = quote(want, safe="")

        def has_log_id(e: Entry) -> bool:
            name = e.get("logName") or ""
            at = name.find("/logs/")
            tail = name[at + 6 :]
            return at >= 0 and (tail in (encoded, want) or unquote(tail) == want)

        return has_log_id

    def search(self, node: Call) -> Predicate:
        query = node.value.text
        runs = [_WORD.findall(_fold(p)) for p in re.findall(r"`([^`]*)`", query)]
        runs += [[t] for t in _WORD.findall(_fold(re.sub(r"`[^`]*`", " ", query)))]
        if not any(runs):
            raise self.error(f"SEARCH needs at least one word, got {query!r}", node.value.pos)
        get = _getter(self.resolve(node.path).keys) if node.path else None

        def found(e: Entry) -> bool:
            v = get(e) if get else {k: x for k, x in e.items() if k[:1] != "_"}
            tokens = [] if v is _MISSING else _search_tokens(v)
            return all(_has_run(tokens, run) for run in runs)

        return found

    def resolve(self, path: Path) -> _Field:
        node, keys = _SCHEMA, []
        for i, part in enumerate(path.parts):
            hit = node.get(part.lower().replace("_", ""))
            if hit is None:
                where_ = ".".join(path.parts[:i]) or "LogEntry"
                raise self.error(f"unknown field {part!r} in {where_} ({path.dotted()})", path.pos)
            name, kind = hit
            keys.append(name)
            rest = path.parts[i + 1 :]
            if isinstance(kind, dict):
                node = kind
            elif kind == MAP:
                return _Field((*keys, *rest), DYNAMIC if rest else MESSAGE)
            elif rest:
                raise self.error(f"{name} is a {kind} and has no field {rest[0]!r}", path.pos)
            else:
                return _Field(tuple(keys), kind)
        return _Field(tuple(keys), MESSAGE)

    def build_cmp(self, node: Cmp) -> Predicate:
        field, op, lit = self.resolve(node.path), node.op, node.value
        get = _getter(field.keys)
        if op == ":*":  # a JSON null in a payload is present; a null schema field is not
            if field.kind == DYNAMIC:
                return lambda e: get(e) is not _MISSING
            return lambda e: (v := get(e)) is not _MISSING and v is not None
        assert lit is not None
        if field.kind == MESSAGE:
            if op != ":":
                msg = f"{node.path.dotted()} is an object: compare one of its fields or use ':'"
                raise self.error(msg, node.path.pos)
            test = self.dynamic_test(":", lit)
            return lambda e: (v := get(e)) is not _MISSING and _any_leaf(v, test)
        if field.kind == DYNAMIC:
            test = self.dynamic_test(op, lit)
            return lambda e: (v := get(e)) is not _MISSING and _any_item(v, test)
        if field.kind == STR:
            return self.string_field(get, self.string_test(op, lit))
        return self.typed_field(field, op, lit, node.path)

    def string_field(self, get: Callable[[Entry], Any], test: Test) -> Predicate:
        def pred(e: Entry) -> bool:
            v = get(e)
            if type(v) is not str:
                v = "" if v is _MISSING or v is None else _text(v)
            return test(v)

        return pred

    def typed_field(self, field: _Field, op: str, lit: Lit, path: Path) -> Predicate:
        parse_literal, convert, default, expected = _TYPED[field.kind]
        if op not in _ORDER:
            raise self.error(f"{op} applies to strings, and {path.dotted()} is not", lit.pos)
        want = parse_literal(lit.text)
        if want is None:
            raise self.error(f"{path.dotted()} expects {expected}, got {lit.text!r}", lit.pos)
        cmp, get = _ORDER[op], _getter(field.keys)
        if field.keys == ("timestamp",):
            get = _precomputed_ts(get)

        def pred(e: Entry) -> bool:
            v = get(e)
            v = default if v is _MISSING or v is None else convert(v)
            return v is not None and cmp(v, want)

        return pred

    def string_test(self, op: str, lit: Lit) -> Test:
        raw = lit.text
        if op in ("=~", "!~"):
            try:
                search = re.compile(re2_to_python(raw)).search
            except (ValueError, re.error) as exc:
                raise self.error(f"bad regular expression {raw!r}: {exc}", lit.pos) from None
            if op == "=~":
                return lambda v: search(v) is not None
            return lambda v: search(v) is None
        want = _fold(raw)
        if op == "=":
            return lambda v: v == raw or _fold(v) == want
        if op == "!=":
            return lambda v: v != raw and _fold(v) != want
        if op == ":":
            return lambda v: want in _fold(v)
        cmp = _ORDER[op]
        return lambda v: cmp(_fold(v), want)

    def dynamic_test(self, op: str, lit: Lit) -> Test:
        """Payload and label values carry their own JSON type; compare by it."""
        if lit.text == "NULL_VALUE" and not lit.quoted:
            if op not in ("=", ":", "!="):
                raise self.error(f"NULL_VALUE cannot be compared with {op}", lit.pos)
            return (lambda v: v is not None) if op == "!=" else (lambda v: v is None)
        text_test = self.string_test(op, lit)
        if op in ("=~", "!~"):
            return lambda v: type(v) is str and text_test(v)
        number, flag, cmp = parse_number(lit.text), _BOOLS.get(lit.text.lower()), _ORDER[op]
        other = op == "!="

        def test(v: Any) -> bool:
            kind = type(v)
            if kind is str:
                return text_test(v)
            if kind is int or kind is float:
                return other if number is None else cmp(v, number)
            if kind is bool:
                return other if flag is None else cmp(v, flag)
            if kind is dict:
                return op == ":" and _any_leaf(v, test)
            return other if v is None else False

        return test
