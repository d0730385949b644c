"""The spec's field types: each value checked against Google's rule as pydantic reads it.

A `Duration` (`900s`, `15m`) becomes seconds, `Memory` bytes, `Cpu` a Decimal; env names and
values, secret references and Scheduler headers are checked one by one, so each bad value is
reported at its own path (deploy.env.NAME) with the rule and the fix, and a value that may be
a secret is never quoted.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from opslib.spec import rules as g
from opslib.spec.rules import RuleBroken

# The only control characters a description may hold (YAML block scalars end in a line break).
_ALLOWED_CONTROLS = "\t\n"


def _duration(value: object, info: ValidationInfo) -> float:
    return g.parse_duration(value, key=info.field_name or "duration")


def _memory(value: object) -> int:
    return g.parse_memory(value)


def _cpu(value: object) -> Decimal:
    return g.parse_cpu(value)


def _env_name(value: object) -> str:
    """Checked per key, so each bad name is reported at its own path (deploy.env.NAME)."""
    if not isinstance(value, str):
        raise RuleBroken(
            "an env var name is text: letters, digits, '_', '-' or '.'",
            f"rename it, e.g. APP_{value}",
        )
    g.check_env_name(value)
    return value


def _env_value(value: object) -> str:
    """Cloud Run env values are strings; the message names the type, never the value."""
    if not isinstance(value, str):
        raise RuleBroken(
            f"Cloud Run env values are strings; this one is {type(value).__name__}",
            'quote the value in the YAML, e.g. DEBUG: "true"',
        )
    return value


def _secret_ref(value: object) -> str:
    if not isinstance(value, str):
        raise RuleBroken(
            "a secret reference is text NAME:VERSION", "write it like API_KEY: api-key:latest"
        )
    g.check_secret_ref(value)
    return value


def _header_name(name: str) -> str:
    low = name.lower()
    if low in ("host", "content-length", "user-agent") or low.startswith(
        ("x-google-", "x-appengine-")
    ):
        raise RuleBroken(
            f"Scheduler sets or reserves the header {name!r} itself",
            f"remove {name} from schedule.headers",
        )
    return name


Duration = Annotated[float, BeforeValidator(_duration)]
Memory = Annotated[int, BeforeValidator(_memory)]
Cpu = Annotated[Decimal, BeforeValidator(_cpu)]
EnvName = Annotated[str, BeforeValidator(_env_name)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]
SecretRef = Annotated[str, BeforeValidator(_secret_ref)]
HeaderName = Annotated[str, AfterValidator(_header_name)]


def is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs") and char not in _ALLOWED_CONTROLS


def slug(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    return (slug if slug[:1].isalpha() else f"job-{slug}")[:63].rstrip("-") or "my-job"


def not_json(value: object, where: str = "body") -> tuple[str, str] | None:
    """The first place in a body that JSON cannot carry (a date, NaN, a set), with its type."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = not_json(item, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = not_json(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return where, "non-finite number"
    if value is None or isinstance(value, str | int | float | bool):
        return None
    return where, type(value).__name__
