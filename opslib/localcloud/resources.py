"""What the Run, Run jobs and Scheduler handlers say alike: names, NOT_FOUND and list pages.

Each of run's services_api and jobs_api/jobs_backend, and scheduler's api, builds
`projects/P/locations/L` from the call's path, answers a missing Run resource with the same
NOT_FOUND, and pages a list into `{key: [...], nextPageToken}`. They take these from here so
the three APIs cannot drift apart on a name, a message or the paging shape.
"""

from __future__ import annotations

from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.errors import ApiError
from opslib.localcloud.router import Call


def parent(call: Call) -> str:
    """`projects/P/locations/L` from the call's path parameters."""
    p = call.params
    return f"projects/{p['project']}/locations/{p['location']}"


def not_found(name: str) -> ApiError:
    """Cloud Run's 404 for a service, revision, job, execution or task."""
    return ApiError("NOT_FOUND", f"Resource '{name}' was not found")


def found(table: dict[str, Any], name: str) -> Any:
    """`table[name]`, or Cloud Run's NOT_FOUND."""
    if name not in table:
        raise not_found(name)
    return table[name]


def paged(
    key: str, items: list[Any], query: dict[str, str], default: int, most: int
) -> dict[str, Any]:
    """One page of `items` under `key`, with `nextPageToken` when more follow."""
    chunk, token = schema.page(items, query, default, most)
    return {key: chunk, **({"nextPageToken": token} if token else {})}
