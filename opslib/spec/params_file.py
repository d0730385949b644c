"""Write a chosen schedule back into a parameters file without losing what people wrote in it.

The cron picker and the quick start change files people also edit by hand, so:

- ruamel.yaml's round trip keeps comments, key order, quoting, flow mappings and indentation
  (guessed from the file); the one comment rewritten is the end-of-line comment on
  `schedule.cron`, which describes the old value and would become false;
- the whole new text is checked with the loader (`opslib.spec.loader`) before anything is
  written, and its errors name the file and line the text would have;
- the write is atomic, and choosing the schedule the file already has writes nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from opslib.core.fsutil import atomic_write
from opslib.core.plan import Change
from opslib.spec import cron, defaults
from opslib.spec.loader import load_spec, load_spec_text
from opslib.spec.model import Spec
from opslib.spec.rules import RuleBroken

STEP = "parameters"
DEFAULT_TIME_ZONE = defaults.TIME_ZONE  # Schedule.time_zone's default when the key is absent


def current_schedule(path: str | Path) -> tuple[str, str]:
    """The (cron, time zone) of a valid parameters file."""
    schedule = load_spec(path).schedule
    return schedule.cron, schedule.time_zone


def set_schedule(path: str | Path, expr: str, time_zone: str) -> Change:
    """Put `expr` and `time_zone` into the file's schedule; no write when they are already there."""
    path = Path(path)
    old_cron, old_zone = current_schedule(path)
    new_cron, new_zone = " ".join(str(expr).split()), str(time_zone).strip()
    fields = tuple(
        key
        for key, old, new in (
            ("schedule.cron", old_cron, new_cron),
            ("schedule.time_zone", old_zone, new_zone),
        )
        if old != new
    )
    if not fields:
        return Change(STEP, str(path), "no change", detail=f"{old_cron} in {old_zone}")
    text = path.read_bytes().decode("utf-8")  # as stored: keep CRLF line ends if it has them
    new_text = _edited(text, new_cron, new_zone, "schedule.cron" in fields)
    check_text(new_text, path)
    atomic_write(path, new_text)
    detail = f"{old_cron} in {old_zone} -> {new_cron} in {new_zone}"
    return Change(STEP, str(path), "update", fields, detail)


def _edited(text: str, new_cron: str, new_zone: str, cron_changed: bool) -> str:
    """The file's text with the new schedule, everything else as it was."""
    yaml, data = round_trip(text.replace("\r\n", "\n"))
    schedule = data["schedule"]
    if cron_changed:
        old = schedule["cron"]
        style = SingleQuotedScalarString if isinstance(old, SingleQuotedScalarString) else None
        schedule["cron"] = (style or DoubleQuotedScalarString)(new_cron)
        _redescribe(schedule, new_cron)
    if "time_zone" in schedule or new_zone != DEFAULT_TIME_ZONE:
        if "time_zone" in schedule:
            schedule["time_zone"] = new_zone
        else:
            schedule.insert(list(schedule).index("cron") + 1, "time_zone", new_zone)
    return dump(yaml, data, crlf="\r\n" in text)


def _redescribe(schedule: CommentedMap, new_cron: str) -> None:
    """Rewrite the cron line's own comment to describe the new value (keeps its column)."""
    token = (schedule.ca.items.get("cron") or [None] * 3)[2]
    if token is None or not token.value.lstrip().startswith("#"):
        return
    try:
        cron.validate(new_cron)
    except RuleBroken:
        return  # the loader reports it, with the line
    _, newline, rest = token.value.partition("\n")
    token.value = f"# {cron.describe(new_cron)}{newline}{rest}"


def round_trip(text: str) -> tuple[YAML, Any]:
    """A ruamel.yaml round-trip loader set to the file's own indentation, and the data."""
    _, indent, sequence_indent = load_yaml_guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long descriptions
    indent = indent or 2
    offset = sequence_indent if sequence_indent is not None else 0
    yaml.indent(mapping=indent, sequence=max(indent, offset + 2), offset=offset)
    return yaml, yaml.load(text)


def dump(yaml: YAML, data: Any, crlf: bool = False) -> str:
    """The YAML text of `data` with `yaml`'s settings, with CRLF line ends if asked."""
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    return text.replace("\n", "\r\n") if crlf else text


def check_text(text: str, path: str | Path) -> Spec:
    """Validate `text` as if it were the file `path`: the loader's errors, naming `path`."""
    return load_spec_text(text, path)
