"""HTTP/1.1 on asyncio protocols: the front's listener side and its connections to instances.

Hand-written instead of aiohttp on purpose: on this path aiohttp's server and client cost about
0.7 ms and 0.3 ms of Python per request, and the front's whole budget is 0.5 ms
(benchmarks/localcloud_proxy.py). Protocol callbacks rather than streams for the same reason:
a request through the front is parsed, forwarded and answered without a task, a future or a
StreamReader in between (streams cost ~50k more CPU instructions per request, callgrind).
Both peers are local and speak plain HTTP/1.1, so this handles exactly that: request and
response heads, Content-Length and chunked bodies, keep-alive, and responses delimited by
connection close.

Over 400 lines on purpose: both peers (Listener, and _Exchange/_Upstream/Pool) share the head
and chunked-body parsers of this module, and each protocol class is one state machine; split
in two, the parsers would sit apart from the only code that calls them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

HEADER_LIMIT = 64 * 1024
IDLE_LIMIT = 32  # pooled connections kept per instance
UNTIL_CLOSE = -1  # a response body delimited by the instance closing the connection
REASONS = {status.value: status.phrase for status in HTTPStatus}


class UpstreamError(Exception):
    """The instance closed the connection or answered something that is not HTTP/1.1."""


class _Stale(UpstreamError):
    """The connection closed before a byte of answer: the instance had dropped it."""


class BadRequest(Exception):
    """The client sent something that is not an HTTP/1.1 request."""


@dataclass(slots=True)
class Request:
    """A request as the front received it; `fields` maps lowercased names to first values."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    remote: str
    fields: dict[str, str]
    keep_alive: bool

    def header(self, name: str, default: str = "") -> str:
        return self.fields.get(name.lower(), default)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _fields(lines: list[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Header lines as (name, value) pairs and a first-value-wins lowercased lookup."""
    headers, lookup = [], {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lookup.setdefault(name.lower(), value)
    return headers, lookup


def _head_lines(
    buffer: bytearray, error: type[Exception], too_large: str
) -> tuple[int, str, list[str]] | None:
    """A complete head's end, first line and header lines; None while more bytes may complete it.

    Both peers' heads are bounded by HEADER_LIMIT the same way; past it, `error(too_large)`.
    """
    end = buffer.find(b"\r\n\r\n", 0, HEADER_LIMIT + 4)
    if end < 0:
        if len(buffer) > HEADER_LIMIT:
            raise error(too_large)
        return None
    first, *lines = buffer[:end].decode("latin-1").split("\r\n")
    return end, first, lines


def _chunked_end(buffer: bytearray, start: int, spans: list[tuple[int, int]]) -> int | None:
    """Where a chunked body that begins at `start` ends, or None until more bytes come.

    `spans` collects each chunk's (begin, end) in `buffer`; ValueError on a bad size line.
    """
    position = start
    while True:
        eol = buffer.find(b"\r\n", position)
        if eol < 0:
            return None
        size = int(bytes(buffer[position:eol]).split(b";", 1)[0].strip(), 16)
        position = eol + 2
        if size == 0:
            while True:  # trailers (not forwarded), then the blank line
                eol = buffer.find(b"\r\n", position)
                if eol < 0:
                    return None
                if eol == position:
                    return eol + 2
                position = eol + 2
        if len(buffer) < position + size + 2:
            return None
        spans.append((position, position + size))
        position += size + 2


def _joined(buffer: bytearray, spans: list[tuple[int, int]]) -> bytes:
    view = memoryview(buffer)
    try:
        return b"".join([view[a:b] for a, b in spans])
    finally:
        view.release()


def response_bytes(
    status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool
) -> bytes:
    """A complete response with Content-Length (hop-by-hop headers are the caller's to drop)."""
    head = "".join(
        [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n",
            *[f"{k}: {v}\r\n" for k, v in headers],
            f"Content-Length: {len(body)}\r\n",
            "\r\n" if keep_alive else "Connection: close\r\n\r\n",
        ]
    )
    return head.encode("latin-1") + body


class Listener(asyncio.Protocol):
    """One client connection: requests parsed as their bytes arrive and answered in order.

    `handle(listener, request)` must end, now or later, in exactly one `listener.reply`. The
    next request is not started before the previous one is answered and its bytes are taken by
    the socket (what `await writer.drain()` would wait for).
    """

    def __init__(self, handle: Callable[[Listener, Request], None], peers: set[Listener]) -> None:
        self.handle, self.peers = handle, peers
        self.transport: Any = None  # uvloop's transports are no asyncio.Transport subclasses
        self.buffer = bytearray()
        self.remote = ""
        self.busy = self.eof = self.closed = self.paused = self.reading_paused = False
        self.looping = False
        self.head: tuple[Request, int, int | None] | None = None  # request, body start, length
        self.spans: list[tuple[int, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.remote = str((transport.get_extra_info("peername") or ("",))[0])
        self.peers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.peers.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()
        elif len(self.buffer) > 2 * HEADER_LIMIT and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def eof_received(self) -> bool:
        self.eof = True
        if not self.busy:
            self._next()
        return True  # half-closed: the answer to a request in flight still goes out

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if not self.busy:
            self._next()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def reply(
        self, request: Request, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """Answer the request in flight; then start the next one."""
        if not self.closed:
            self.transport.write(response_bytes(status, headers, body, request.keep_alive))
            if not request.keep_alive:
                self.close()
        self.busy = False
        if not self.looping:
            self._next()

    def _next(self) -> None:
        """Start every request that is complete, one at a time, while none is in flight."""
        self.looping = True
        try:
            while not self.busy and not self.paused and not self.closed:
                request = self._parse()
                if request is None:
                    if self.eof:
                        if self.head is None and bytes(self.buffer).strip():
                            raise BadRequest("incomplete request head")
                        self.close()  # the client is done (or left mid-body: no answer)
                    elif self.reading_paused:
                        self.transport.resume_reading()
                        self.reading_paused = False
                    return
                self.busy = True
                self.handle(self, request)
        except BadRequest as exc:
            body = f"Bad Request: {exc}\n".encode()
            self.transport.write(
                response_bytes(400, [("Content-Type", "text/plain; charset=utf-8")], body, False)
            )
            self.close()
        finally:
            self.looping = False

    def _parse(self) -> Request | None:
        """The next complete request in the buffer (which then drops its bytes), or None."""
        buffer = self.buffer
        if self.head is None:
            found = _head_lines(buffer, BadRequest, "request head too large")
            if found is None:
                return None
            end, line, raw = found
            parts = line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise BadRequest(f"bad request line {line!r}")
            headers, lookup = _fields(raw)
            connection = lookup.get("connection", "").lower()
            if parts[2] == "HTTP/1.1":
                keep_alive = connection != "close"
            else:
                keep_alive = connection == "keep-alive"
            request = Request(
                parts[0], parts[1], parts[2], headers, b"", self.remote, lookup, keep_alive
            )
            if "expect" in lookup and lookup["expect"].lower() == "100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            length: int | None = 0
            if "transfer-encoding" in lookup and "chunked" in lookup["transfer-encoding"].lower():
                length = None
            elif lookup.get("content-length", "0") not in ("", "0"):
                text = lookup["content-length"]
                if not (text.isascii() and text.isdigit()):  # int() would take "+5" and "1_0"
                    raise BadRequest("bad Content-Length")
                length = int(text)
            self.head = (request, end + 4, length)
            self.spans = []
        request, start, length = self.head
        if length is None:
            try:
                end = _chunked_end(buffer, start, self.spans)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if end is None:
                self.spans = []  # scanned again from the start when more bytes come
                return None
            request.body = _joined(buffer, self.spans)
        else:
            end = start + length
            if len(buffer) < end:
                return None
            if length:
                request.body = bytes(buffer[start:end])
        del buffer[:end]
        self.head = None
        return request


Done = Callable[[Response | None, BaseException | None], None]


# A pooled connection is reused only this long after its last answer: gunicorn closes idle
# keep-alive connections after 2 s, so one younger than that is not closing as we write to it.
MAX_IDLE = 1.0
# Methods a client may repeat (RFC 9110 9.2.2): only these are sent again when a pooled
# connection closes without a byte of answer. A POST may have run: it fails instead (503).
REPLAYABLE = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class _Exchange:
    """One request to an instance: on a pooled connection, else on a new one, until a deadline."""

    __slots__ = ("connection", "data", "done", "finished", "pool", "replayable", "task", "timer")

    def __init__(self, pool: Pool, data: bytes, done: Done, replayable: bool) -> None:
        self.pool, self.data, self.done, self.replayable = pool, data, done, replayable
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.connection: _Upstream | None = None
        self.finished = False

    def start(self) -> None:
        idle = self.pool.idle
        oldest = self.pool.loop.time() - MAX_IDLE
        while idle:
            connection = idle.pop()
            if connection.usable() and connection.idle_since >= oldest:
                connection.begin(self, retry=self.replayable)
                return
            connection.close()
        self.fresh()

    def fresh(self) -> None:
        self.task = self.pool.loop.create_task(self._connect())

    async def _connect(self) -> None:
        pool = self.pool
        try:
            _, connection = await pool.loop.create_connection(
                lambda: _Upstream(pool), "127.0.0.1", pool.port
            )
        except OSError as exc:
            self.finish(None, exc)
            return
        finally:
            self.task = None
        if self.finished:
            connection.close()
        else:
            connection.begin(self, retry=False)

    def timed_out(self) -> None:
        if self.finished:
            return
        if self.task is not None:
            self.task.cancel()
        if self.connection is not None:
            self.connection.exchange = None
            self.connection.close()  # the instance keeps running; only this exchange is dropped
        self.finish(None, TimeoutError())

    def finish(self, response: Response | None, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        self.done(response, error)


class _Upstream(asyncio.Protocol):
    """A keep-alive connection to an instance; one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.exchange: _Exchange | None = None
        self.retry = False
        self.buffer = bytearray()
        self.spans: list[tuple[int, int]] = []
        self.head: tuple[int, list[tuple[str, str]], bool, int | None, int] | None = None
        self.eof = self.lost = self.received = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def usable(self) -> bool:
        return not (self.eof or self.lost or self.transport.is_closing())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def begin(self, exchange: _Exchange, retry: bool) -> None:
        self.exchange, self.retry, self.received = exchange, retry, False
        exchange.connection = self
        self.transport.write(exchange.data)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        self.buffer += data
        self.received = True
        try:
            answer = self._parse()
        except UpstreamError as exc:
            self._fail(exc)
            return
        except ValueError as exc:
            self._fail(UpstreamError(f"not an HTTP/1.1 answer: {exc}"))
            return
        if answer is not None:
            self._complete(*answer)

    def eof_received(self) -> bool:
        self.eof = True
        if self.exchange is not None:
            if self.head is not None and self.head[3] == UNTIL_CLOSE:
                status, headers, _, _, start = self.head
                self._complete(Response(status, headers, bytes(self.buffer[start:])), False)
            else:
                self._closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.exchange is not None:
            self._closed(exc)
        if self in self.pool.idle:
            self.pool.idle.remove(self)

    def _closed(self, exc: Exception | None) -> None:
        reason = f"instance closed the connection: {exc or 'EOF'}"
        if not self.received:
            self._fail(_Stale(reason))
        else:
            self._fail(UpstreamError(reason))

    def _fail(self, error: UpstreamError) -> None:
        exchange, self.exchange = self.exchange, None
        self.close()
        if exchange is None:
            return
        if isinstance(error, _Stale) and self.retry and not exchange.finished:
            exchange.connection = None
            exchange.fresh()  # a pooled connection the instance had dropped: once more, anew
            return
        exchange.finish(None, error)

    def _parse(self) -> tuple[Response, bool] | None:
        """The answer once it is complete in the buffer, and whether the connection is reusable."""
        buffer = self.buffer
        while self.head is None:
            found = _head_lines(buffer, UpstreamError, "instance answered a head too large")
            if found is None:
                return None
            end, status_line, raw = found
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise UpstreamError(f"not an HTTP/1.1 answer: {status_line!r}")
            status = int(parts[1])
            if 100 <= status < 200:  # interim (100 Continue): the answer follows
                del buffer[: end + 4]
                continue
            headers, lookup = _fields(raw)
            keep = lookup.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
            length: int | None
            if self.exchange.data.startswith(b"HEAD ") or status in (204, 304):
                length = 0
            elif "chunked" in lookup.get("transfer-encoding", "").lower():
                length = None
            elif "content-length" in lookup:
                text = lookup["content-length"]
                if not (text.isascii() and text.isdigit()):
                    raise UpstreamError(f"bad Content-Length {text!r}")
                length = int(text)
            else:
                length = UNTIL_CLOSE
            self.head = (status, headers, keep, length, end + 4)
            self.spans = []
        status, headers, keep, length, start = self.head
        if length is None:
            end = _chunked_end(buffer, start, self.spans)
            if end is None:
                self.spans = []
                return None
            body = _joined(buffer, self.spans)
        elif length >= 0:
            end = start + length
            if len(buffer) < end:
                return None
            body = bytes(buffer[start:end])
        else:
            return None
        return Response(status, headers, body), keep and len(buffer) == end

    def _complete(self, response: Response, reusable: bool) -> None:
        exchange, self.exchange = self.exchange, None
        self.head = None
        self.buffer.clear()
        if reusable and not self.eof and len(self.pool.idle) < IDLE_LIMIT:
            self.idle_since = self.pool.loop.time()
            self.pool.idle.append(self)
        else:
            self.close()
        exchange.finish(response, None)


class Pool:
    """Idle keep-alive connections to one instance port."""

    def __init__(self, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.port, self.loop = port, loop
        self.idle: list[_Upstream] = []
        self.host = f"Host: 127.0.0.1:{port}\r\n"

    def send(
        self, method: str, target: str, headers: str, body: bytes, timeout: float, done: Done
    ) -> None:
        """One exchange; `done(response, None)`, or `done(None, error)` with TimeoutError after
        `timeout` seconds (the connection is then dropped), UpstreamError or OSError.

        `headers` are "Name: value\\r\\n" lines, without Host and Content-Length. An idle
        connection the instance may be closing is never used: one whose close arrived or that
        idled over MAX_IDLE is dropped. One that still closes without a byte of answer is tried
        once more on a new connection for a replayable method; any other request fails (503),
        as a job that may have run must not run twice.
        """
        head = (
            f"{method} {target} HTTP/1.1\r\n{self.host}Content-Length: {len(body)}\r\n{headers}\r\n"
        )
        exchange = _Exchange(self, head.encode("latin-1") + body, done, method in REPLAYABLE)
        exchange.timer = self.loop.call_later(timeout, exchange.timed_out)
        exchange.start()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
