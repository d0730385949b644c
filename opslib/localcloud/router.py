"""One route table for every emulated API: (method, path pattern) -> handler.

Patterns are Google's HTTP rules written with `{name}` (one path segment, no ':') and
`{name*}` (the rest, slashes included). An unmatched call answers 501 naming the method and
path, the way Google answers a method it does not serve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from opslib.localcloud.errors import ApiError

IGNORED_QUERY = {"alt", "$alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key"}


@dataclass
class Call:
    """What a handler sees: the path's parameters, the query, and the JSON body."""

    request: web.Request
    params: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    _body: Any = None

    async def json(self) -> dict[str, Any]:
        if self._body is None:
            raw = await self.request.read()
            if not raw.strip():
                self._body = {}
            else:
                try:
                    self._body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(
                        "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}"
                    ) from None
            if not isinstance(self._body, dict):
                raise ApiError(
                    "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object."
                )
        return self._body


Handler = Callable[[Call], Awaitable[Any]]


def _compile(pattern: str) -> re.Pattern[str]:
    """`{name}` matches one segment (no '/' or ':'), `{name*}` the rest; the rest is literal."""
    regex = ""
    for literal, name, star in re.findall(r"([^{]*)(?:\{(\w+)(\*?)\})?", pattern):
        regex += re.escape(literal)
        if name:
            regex += f"(?P<{name}>.+)" if star else f"(?P<{name}>[^/:]+)"
    return re.compile(f"^{regex}$")


class Router:
    """Dispatch by method and path; errors become Google's JSON error model."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every API call, for tests

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, _compile(pattern), pattern, handler))

    def table(self) -> list[tuple[str, str]]:
        """(method, pattern) of every emulated call, for docs and the control API."""
        return [(method, pattern) for method, _, pattern, _ in self.routes]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("tail", request.path)
        path = "/" + path.lstrip("/")
        query = {k: v for k, v in request.query.items() if k not in IGNORED_QUERY}
        allowed = False
        for method, regex, _, handler in self.routes:
            match = regex.match(path)
            if not match:
                continue
            allowed = True
            if method != request.method:
                continue
            self.calls.append((method, path))
            try:
                result = await handler(Call(request, match.groupdict(), query))
            except ApiError as exc:
                return web.json_response(exc.body(), status=exc.http_status)
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result if result is not None else {})
        status = "UNIMPLEMENTED"
        what = "method" if allowed else "path"
        error = ApiError(
            status, f"localcloud does not emulate {request.method} {path} ({what} not served)"
        )
        return web.json_response(error.body(), status=error.http_status)
