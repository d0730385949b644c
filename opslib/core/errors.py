"""One error family for opslib: every error says where, what, and how to fix it.

The CLI maps `BadInput` to exit code 2 and any other `OpslibError` to exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass

VALUE_MAX = 120  # characters of a value an error quotes (a 5 MB description is not echoed)
LINE_MAX = 1000  # characters of any one line of an error: the net under every message


def clip(text: str, limit: int = VALUE_MAX) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


class OpslibError(Exception):
    """A failure the user can act on; `fix` says how."""

    exit_code = 1

    def __init__(self, where: str, what: str, fix: str = "") -> None:
        self.where, self.what, self.fix = where, what, fix
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        text = f"{text}\n  fix: {self.fix}" if self.fix else text
        return "\n".join(clip(line, LINE_MAX) for line in text.splitlines())


class BadInput(OpslibError):
    """The input (a spec, a file, a flag) is wrong; nothing was changed."""

    exit_code = 2


@dataclass(frozen=True)
class SpecIssue:
    """One broken rule in a parameters file."""

    file: str
    line: int | None
    path: str
    value: object
    rule: str
    fix: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        value = "(missing)" if self.value is _MISSING else clip(repr(self.value))
        return f"{where}: {self.path} = {value}\n  rule: {self.rule}\n  fix:  {self.fix}"


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


class _Hidden:
    def __repr__(self) -> str:
        return "***"


_MISSING = _Missing()
MISSING: object = _MISSING
# Shown instead of a value that may be a secret (env values, headers, body, secret refs).
HIDDEN: object = _Hidden()


class SpecError(BadInput):
    """A parameters file breaks one or more rules; all of them are listed."""

    def __init__(self, file: str, issues: list[SpecIssue]) -> None:
        self.file, self.issues = file, issues
        count = f"{len(issues)} error{'s' if len(issues) != 1 else ''}"
        body = "\n".join(issue.render() for issue in issues)
        super().__init__(file, f"{count} in the automation spec\n{body}")
