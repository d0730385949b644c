"""Read a parameters YAML into a `Spec`, or report every broken rule with file, line and fix.

Nothing is written here: checking a spec never changes a file or the cloud.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from opslib.core.errors import HIDDEN, MISSING, BadInput, SpecError, SpecIssue
from opslib.spec import rules as g
from opslib.spec.cross_checks import cross_checks
from opslib.spec.model import Spec
from opslib.spec.rules import RuleBroken

EXAMPLES = {
    "project": "my-project-123",
    "region": "asia-northeast3",
    "service": "batch-service",
    "job": "{name: fx-rates}",
    "job.name": "fx-rates",
    "schedule": '{cron: "0 9 * * 1-5", time_zone: Asia/Seoul}',
    "schedule.cron": '"0 9 * * 1-5"',
}

Path_ = tuple[str, ...]
# Refused before parsing: a spec is a few hundred bytes, and every step reads it again.
MAX_BYTES = 256 * 1024
# Values under these keys may be secrets: errors name the key and never print the value.
SECRET_KEYS: tuple[Path_, ...] = (
    ("deploy", "env"),
    ("schedule", "headers"),
    ("schedule", "body"),
    ("secrets",),
    ("alerts", "channels"),  # a webhook URL pasted in place of its secret's name
)


def load_spec(path: str | Path) -> Spec:
    """The validated spec in `path`; SpecError lists every problem at once."""
    path = Path(path)
    data, lines = _parse_yaml(_read_text(path), path)
    return _validate(data, path, lines)


def load_spec_text(text: str, path: str | Path) -> Spec:
    """The validated spec in `text`, reported as the file `path` (a file about to be written)."""
    path = Path(path)
    _check_size(len(text.encode("utf-8", errors="replace")), path)
    data, lines = _parse_yaml(text, path)
    return _validate(data, path, lines)


def spec_from_mapping(data: dict[str, Any], source: str = "notebook parameters") -> Spec:
    """The validated spec from keys passed another way (papermill `-f parameters/NAME.yaml`)."""
    return _validate(data, Path(source), {})


def _validate(data: dict[str, Any], path: Path, lines: dict[Path_, int]) -> Spec:
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(path, lines, data, err) for err in exc.errors()]
        raise SpecError(str(path), issues) from None
    problems = cross_checks(spec)
    if problems:
        raise SpecError(
            str(path),
            [
                SpecIssue(
                    str(path), _line(lines, key), ".".join(key), _shown(key, value), rule, fix
                )
                for key, value, rule, fix in problems
            ],
        )
    return spec


def _read_text(path: Path) -> str:
    """The file's text; a missing, unreadable, too large or non-UTF-8 file is bad input."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # never more: a huge file is refused, not read
        _check_size(len(data), path)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise BadInput(str(path), "no such parameters file", "give the path of a .yaml") from None
    except UnicodeDecodeError as exc:
        raise BadInput(
            str(path),
            f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise BadInput(
            str(path), f"cannot be read: {exc.strerror or exc}", "give the path of a .yaml file"
        ) from None


def key_line(path: Path, key: str) -> int | None:
    """The line of `key` (dotted) in a parameters file, for a message about it; None when the
    file cannot be read again."""
    try:
        _, lines = _parse_yaml(_read_text(path), path)
    except BadInput:
        return None
    return _line(lines, tuple(key.split(".")))


def _check_size(size: int, path: Path) -> None:
    if size > MAX_BYTES:
        raise BadInput(
            str(path),
            f"is over {MAX_BYTES // 1024} KiB; a parameters file is a few hundred bytes",
            "keep one automation's settings in it (data and long text belong elsewhere)",
        )


def _parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], dict[Path_, int]]:
    """Parse once: the node tree gives each key's line, and the data is built from it."""
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        raise BadInput(
            str(path), f"not valid YAML: {exc}", "remove the control characters from the file"
        ) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BadInput(
            where,
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            "fix the YAML syntax (indentation, quotes around cron)",
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise BadInput(str(path), "the file must be a YAML mapping of keys", "see example.yaml")
    lines: dict[Path_, int] = {}
    _index(node, (), lines, path)
    return data, lines


def _index(node: yaml.Node, key: Path_, lines: dict[Path_, int], path: Path) -> None:
    """Map each key path to its line; a key given twice is an error (PyYAML keeps the last)."""
    if isinstance(node, yaml.SequenceNode):  # list items by index, as pydantic names them
        for index, item in enumerate(node.value):
            lines[(*key, str(index))] = item.start_mark.line + 1
            _index(item, (*key, str(index)), lines, path)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        name = str(key_node.value)
        if name in seen:
            raise BadInput(
                f"{path}:{key_node.start_mark.line + 1}",
                f"the key {'.'.join((*key, name))} is given twice",
                "keep one of them",
            )
        seen.add(name)
        lines[(*key, name)] = key_node.start_mark.line + 1
        _index(value_node, (*key, name), lines, path)


def _line(lines: dict[Path_, int], key: Path_) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def _value_at(data: Any, key: Path_) -> object:
    for part in key:
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif not isinstance(data, dict) or part not in data:
            return MISSING
        else:
            data = data[part]
    return data


def _issue(path: Path, lines: dict[Path_, int], data: dict, err: dict) -> SpecIssue:
    # pydantic marks a bad dict key with "[key]"; the path is the key itself either way.
    key = tuple(str(part) for part in err["loc"] if part != "[key]")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RuleBroken) and cause.key:
        key = (*key, *cause.key.split("."))
    dotted = ".".join(key)
    value = _value_at(data, key) if err["type"] != "missing" else MISSING
    if err["type"] == "extra_forbidden":
        value = HIDDEN  # an unknown key may be a misspelt secret
    rule, fix = _rule_and_fix(err, key, dotted)
    return SpecIssue(str(path), _line(lines, key), dotted, _shown(key, value), rule, fix)


def _shown(key: Path_, value: object) -> object:
    """The value to print for `key`: hidden wherever a secret may live."""
    if value is MISSING or not any(key[: len(s)] == s for s in SECRET_KEYS):
        return value
    return HIDDEN


def _rule_and_fix(err: dict, key: Path_, dotted: str) -> tuple[str, str]:
    kind, ctx = err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, RuleBroken):
        return cause.rule, cause.fix
    if kind == "extra_forbidden":
        known = _known_keys(key[:-1])
        hint = g.suggest(key[-1], known)
        return (
            f"unknown key{hint}; keys here: {', '.join(sorted(known))}",
            f"remove {dotted}" + (f" or rename it{hint}" if hint else ""),
        )
    if kind == "missing":
        return "a required key", f"add {dotted}: {EXAMPLES.get(dotted, '...')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}", f"use one of {ctx.get('expected')}"
    return err["msg"], f"give {dotted} a valid value ({err['msg'].lower()})"


def _known_keys(key: Path_) -> list[str]:
    model: type[BaseModel] | None = Spec
    for part in key:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        if get_origin(annotation) in (Union, UnionType):  # `alerts: Alerts | None`
            annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return list(model.model_fields) if model else []
