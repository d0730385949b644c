"""The front's connection to an instance: HTTP/1.1 keep-alive over asyncio streams.

Hand-written instead of aiohttp's client on purpose: on this path aiohttp's client costs about
0.3 ms of Python per request (measured against raw streams to the same gunicorn), and the front's
whole budget is 0.5 ms (benchmarks/localcloud_proxy.py). The peer is always a local instance
that speaks plain HTTP/1.1, so this handles exactly that: Content-Length and chunked bodies,
and responses delimited by connection close.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

HEADER_LIMIT = 256 * 1024


class UpstreamError(Exception):
    """The instance closed the connection or answered something that is not HTTP/1.1."""


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
        """One exchange; raises TimeoutError after `timeout` (the connection is then dropped)."""
        reader, writer = (
            self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        )
        try:
            response, reusable = await asyncio.wait_for(
                self._exchange(reader, writer, method, target, headers, body), timeout
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
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            raise UpstreamError(f"instance closed the connection: {exc}") from None
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
