"""The items of an external API's JSON answer, shared by every generated job."""

from __future__ import annotations

from typing import Any


def records(data: Any) -> list[Any]:
    """A list as it is, or the entries of the answer's first list or dict; else the answer."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list):
                return value
            if isinstance(value, dict):
                return list(value.items())
    return [data]
