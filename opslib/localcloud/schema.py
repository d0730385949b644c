"""Request bodies checked as Google's JSON parser checks them: an unknown field is a 400.

A schema is a dict of camelCase field name -> ANY (free-form), SCALAR, a nested schema, or
[schema] for a repeated message. snake_case names are accepted too, as Google accepts them.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from opslib.localcloud.errors import ApiError

ANY = "any"
SCALAR = "scalar"


def camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def check(body: dict[str, Any], schema: dict[str, Any], where: str = "") -> dict[str, Any]:
    """`body` with camelCase keys; raises INVALID_ARGUMENT naming the first unknown field."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = camel(key)
        if name not in schema:
            at = f" at '{where}'" if where else ""
            message = f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            field = f"{where}.{snake(name)}" if where else snake(name)
            raise ApiError("INVALID_ARGUMENT", message, [(field, message)])
        kind = schema[name]
        path = f"{where}.{snake(name)}" if where else snake(name)
        if isinstance(kind, dict) and isinstance(value, dict):
            value = check(value, kind, path)
        elif isinstance(kind, list) and isinstance(value, list):
            value = [check(v, kind[0], path) if isinstance(v, dict) else v for v in value]
        elif isinstance(kind, dict | list) and value is not None:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid value at '{path}', {value!r}",
                [(path, f"Invalid value at '{path}'")],
            )
        out[name] = value
    return out


def enum_name(value: Any, names: dict[int, str], field: str) -> str:
    """Enums arrive as names (gcloud) or numbers (Python REST clients); keep the name."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in names:
            raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}', {value}")
        return names[value]
    if isinstance(value, str) and value in names.values():
        return value
    raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}', \"{value}\"")


def b64decode(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(
            value.replace("-", "+").replace("_", "/") + "==="[: (-len(value)) % 4]
        )
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}': not base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def page(
    items: list[Any], call_query: dict[str, str], default: int, maximum: int
) -> tuple[list[Any], str]:
    """One page of `items` and the token for the next (an offset, opaque to clients)."""
    size = int(call_query.get("pageSize") or default)
    if size < 0:
        raise ApiError("INVALID_ARGUMENT", "page_size must not be negative")
    size = min(size or default, maximum)
    token = call_query.get("pageToken") or ""
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", "Invalid page token") from None
    chunk = items[start : start + size]
    more = start + size < len(items)
    next_token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else ""
    return chunk, next_token
