"""A .env file read for `opslib secrets import`: its KEY=VALUE lines, each checked as an env
var name and a secret id, values never shown (not in reprs, not in errors)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from opslib.core.errors import BadInput
from opslib.spec import rules as g


@dataclass(frozen=True)
class EnvEntry:
    """One KEY=VALUE of a .env file; the value is kept out of repr."""

    key: str
    line: int
    value: str = field(repr=False)


def secret_id_for(key: str) -> str:
    """The secret id an env var maps to (`FX_API_KEY` -> `fx-api-key`), as the seed names them."""
    return key.lower().replace("_", "-")


# python-dotenv is not installed in this environment, and a dependency for ~60 lines is not worth
# it: this parser reads what dotenv files hold in practice: blank lines, `# comments`,
# `export KEY=...`, unquoted values with ` # trailing comments`, 'single' (literal) and "double"
# quotes (\n \t \r \" \\ escapes; may span lines). No ${VAR} expansion: secret values often
# contain `$`, so every value is taken literally.
_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([^\s=#]+)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_env(path: Path) -> list[EnvEntry]:
    """The entries of a .env file; a bad line is BadInput naming file:line (never its value)."""
    lines = _read_env(path).splitlines()
    entries: list[EnvEntry] = []
    index = 0
    while index < len(lines):
        number, text = index + 1, lines[index]
        index += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(text)
        if not match:
            raise BadInput(
                f"{path}:{number}",
                "this line is not KEY=VALUE (its text is not shown: it may be a secret)",
                "write it as KEY=VALUE, or comment it out with #",
            )
        key, rest = match.groups()
        value, index = _value(path, number, key, rest, lines, index)
        entries.append(EnvEntry(key, number, value))
    return entries


def _read_env(path: Path) -> str:
    """The file's text; a missing or unreadable file is bad input, not a crash."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(str(path), "no such .env file", "check the path") from None
    except UnicodeDecodeError:
        raise BadInput(str(path), "not UTF-8 text", "save the .env file as UTF-8") from None
    except OSError as exc:
        raise BadInput(str(path), f"cannot read it ({exc.strerror})", "check the path") from None


def _value(
    path: Path, number: int, key: str, rest: str, lines: list[str], index: int
) -> tuple[str, int]:
    """A value and the index of the next line (a quoted value may continue on later lines)."""
    quote = rest[:1]
    if quote not in ("'", '"'):
        return re.split(r"\s#", rest, maxsplit=1)[0].strip(), index
    body = rest[1:]
    while (end := _closing(body, quote)) < 0:
        if index >= len(lines):
            raise BadInput(
                f"{path}:{number}",
                f"{key}: the {quote} quote is never closed",
                f"end it with {quote}",
            )
        body, index = f"{body}\n{lines[index]}", index + 1
    after = body[end + 1 :].strip()
    if after and not after.startswith("#"):
        raise BadInput(
            f"{path}:{number}",
            f"{key}: text after the closing {quote} quote",
            "put the whole value inside the quotes, or start a comment with ' #'",
        )
    text = body[:end]
    if quote == '"':
        text = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)
    return text, index


def _closing(text: str, quote: str) -> int:
    """Index of the closing quote (a double quote may be escaped with a backslash), or -1."""
    escaped = False
    for position, char in enumerate(text):
        if char == quote and not escaped:
            return position
        escaped = quote == '"' and char == "\\" and not escaped
    return -1


def select(path: Path, entries: list[EnvEntry], keys: Iterable[str] | None) -> list[EnvEntry]:
    """The entries to import, each checked as an env var name and a secret id."""
    wanted = list(keys) if keys is not None else None
    chosen = [e for e in entries if wanted is None or e.key in wanted]
    missing = sorted(set(wanted or ()) - {e.key for e in entries})
    if missing:
        raise BadInput(str(path), f"no line for {', '.join(missing)}", "add KEY=VALUE lines")
    seen: dict[str, EnvEntry] = {}
    for entry in chosen:
        where, secret_id = f"{path}:{entry.line}", secret_id_for(entry.key)
        try:
            g.check_env_name(entry.key)
        except g.RuleBroken as broken:
            raise BadInput(where, f"{entry.key}: {broken.rule}", broken.fix) from None
        if not g.SECRET_ID.fullmatch(secret_id):
            raise BadInput(
                where,
                f"{entry.key}: secret id {secret_id!r} is not 1-255 letters, digits, '_' or '-'",
                "rename the key using letters, digits and '_' only",
            )
        if secret_id in seen:
            first = seen[secret_id]
            raise BadInput(
                where,
                f"{entry.key}: maps to secret {secret_id}, as {first.key} on line {first.line}",
                "keep one line per key",
            )
        seen[secret_id] = entry
    return chosen
