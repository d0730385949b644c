"""HTTP/1.1 on asyncio streams: the front's listener side and its connection to an instance.

Hand-written instead of aiohttp on purpose: on this path aiohttp's server and client cost about
0.7 ms and 0.3 ms of Python per request (measured against raw streams to the same gunicorn), and
the front's whole budget is 0.5 ms (benchmarks/localcloud_proxy.py). Both peers are local and
speak plain HTTP/1.1, so this handles exactly that: request and response heads, Content-Length
and chunked bodies, keep-alive, and responses delimited by connection close.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus

HEADER_LIMIT = 64 * 1024


class UpstreamError(Exception):
    """The instance closed the connection or answered something that is not HTTP/1.1."""


class _Stale(UpstreamError):
    """The connection closed before a byte of answer: the instance had dropped it."""


class BadRequest(Exception):
    """The client sent something that is not an HTTP/1.1 request."""


@dataclass
class Request:
    """A request as the front received it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    remote: str

    def header(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), default)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        connection = self.header("Connection").lower()
        return connection != "close" if self.version == "HTTP/1.1" else connection == "keep-alive"


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """The next request on a connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too large") from None
    line, *raw = head[:-4].decode("latin-1").split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {line!r}")
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in raw if ":" in h)]
    lookup = {k.lower(): v for k, v in headers}
    if lookup.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        body = await _chunked(reader)
    elif lookup.get("content-length", "0").strip() not in ("", "0"):
        body = await reader.readexactly(int(lookup["content-length"]))
    else:
        body = b""
    peer = writer.get_extra_info("peername") or ("",)
    return Request(parts[0], parts[1], parts[2], headers, body, str(peer[0]))


def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    keep_alive: bool,
) -> None:
    """A complete response with Content-Length (hop-by-hop headers are the caller's to drop)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        *(f"{k}: {v}" for k, v in headers),
        f"Content-Length: {len(body)}",
    ]
    if not keep_alive:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Pool:
    """Idle keep-alive connections to one instance port."""

    port: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> Response:
        """One exchange; raises TimeoutError after `timeout` (the connection is then dropped).

        An idle connection the instance closed (gunicorn drops keep-alive connections after a
        couple of seconds) is never used: one whose close already arrived is skipped, and one
        that closes without a byte of answer is retried once on a new connection, as HTTP
        clients do with pooled connections.
        """
        while self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                return await self._on(reader, writer, method, target, headers, body, timeout)
            except _Stale:
                break
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            return await self._on(reader, writer, method, target, headers, body, timeout)
        except _Stale as exc:
            raise UpstreamError(str(exc)) from None

    async def _on(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        try:
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                response, reusable = await self._exchange(
                    reader, writer, method, target, headers, body
                )
        except BaseException:
            writer.close()
            raise
        if reusable and len(self.idle) < 32:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return response

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> tuple[Response, bool]:
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale(f"instance closed the connection: {exc}") from None
            raise UpstreamError(f"instance closed the connection: {exc}") from None
        except ConnectionError as exc:
            raise _Stale(f"instance closed the connection: {exc}") from None
        except asyncio.LimitOverrunError as exc:
            raise UpstreamError(f"instance answered a head too large: {exc}") from None
        status_line, *raw_headers = head[:-4].decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise UpstreamError(f"not an HTTP/1.1 answer: {status_line!r}")
        pairs = [tuple(h.split(":", 1)) for h in raw_headers if ":" in h]
        response_headers = [(k.strip(), v.strip()) for k, v in pairs]
        lookup = {k.lower(): v for k, v in response_headers}
        status = int(parts[1])
        keep = lookup.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            payload = b""
        elif "chunked" in lookup.get("transfer-encoding", "").lower():
            payload = await _chunked(reader)
        elif "content-length" in lookup:
            payload = await reader.readexactly(int(lookup["content-length"]))
        else:
            payload, keep = await reader.read(), False
        return Response(status, response_headers, payload), keep

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers are not forwarded
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
