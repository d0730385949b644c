"""Cloud Run's front end, one listener per service URL: IAM, routing, timeouts, request logs.

A private service (the default) answers 403 without a token and 401 with a bad one; a token
must be signed by localcloud, carry the service URL (or a custom audience) as `aud`, and name
a principal with roles/run.invoker on the service (or allUsers). A request that outlives the
revision's timeout gets 504 while the instance keeps running. Every request is logged to
`run.googleapis.com/requests` with `httpRequest`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from opslib.localcloud import run_model, tokens
from opslib.localcloud.clock import duration_seconds
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.upstream import (
    BadRequest,
    Pool,
    Request,
    UpstreamError,
    read_request,
    write_response,
)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
TIMEOUT_TEXT = (
    "The request has been terminated because it has reached the maximum request timeout. "
    "To change this limit, see https://cloud.google.com/run/docs/configuring/request-timeout"
)
FORBIDDEN = (
    "<html><head><title>403 Forbidden</title></head><body><h1>Error: Forbidden</h1>"
    "<h2>Your client does not have permission to get URL <code>{path}</code> from this "
    "server.</h2></body></html>"
)
UNAUTHORIZED = (
    "<html><head><title>401 Unauthorized</title></head><body><h1>Error: Unauthorized</h1>"
    "<h2>Your client does not have permission to the requested URL <code>{path}</code>."
    "</h2></body></html>"
)
INVOKER_ROLES = {
    "roles/run.invoker",
    "roles/run.admin",
    "roles/run.developer",
    "roles/owner",
    "roles/editor",
}


Reply = tuple[int, list[tuple[str, str]], bytes]


def _text(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return status, [("Content-Type", content_type)], text.encode()


class Front:
    """The per-service listeners, and the pooled connections to instances they share."""

    def __init__(self, cloud: Cloud, run: Any) -> None:
        self.cloud, self.run = cloud, run
        self.servers: dict[str, asyncio.Server] = {}
        self.connections: dict[str, set[asyncio.StreamWriter]] = {}
        self.pools: dict[int, Pool] = {}
        self.verified: dict[str, dict[str, Any]] = {}

    async def ensure(self, service: dict[str, Any]) -> None:
        """Listen on the service's URL (idempotent)."""
        name = service["name"]
        if name in self.servers:
            return
        self.connections[name] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(name, reader, writer)

        self.servers[name] = await asyncio.start_server(
            serve, "127.0.0.1", service["_port"], reuse_address=True, limit=64 * 1024
        )

    async def remove(self, service: dict[str, Any]) -> None:
        await self._stop(service["name"])

    async def _stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is None:
            return
        server.close()
        for writer in self.connections.pop(name, set()):
            writer.close()
        await server.wait_closed()

    async def close(self) -> None:
        for name in list(self.servers):
            await self._stop(name)
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    async def _serve(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One client connection: requests in order, kept alive as the client asks."""
        self.connections[name].add(writer)
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
                except BadRequest as exc:
                    status, headers, body = _text(400, f"Bad Request: {exc}\n")
                    write_response(writer, status, headers, body, keep_alive=False)
                    break
                if request is None:
                    break
                status, headers, body = await self.handle(name, request)
                write_response(writer, status, headers, body, request.keep_alive)
                await writer.drain()
                if not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections.get(name, set()).discard(writer)
            writer.close()

    def _authorized(self, service: dict[str, Any], request: Request) -> tuple[int, str] | None:
        """None when the request may pass; else (status, reason)."""
        bindings = service.get("_iam", {}).get("bindings", [])
        members = {
            m for b in bindings if b.get("role") in INVOKER_ROLES for m in b.get("members", [])
        }
        if service.get("invokerIamDisabled") or "allUsers" in members:
            return None
        header = request.header("Authorization")
        if not header.startswith("Bearer "):
            return 403, "no identity token"
        token = header[7:].strip()
        claims = self.verified.get(token)
        if claims is None:
            try:
                claims = tokens.verify(self.cloud, token)
            except tokens.InvalidToken as exc:
                return 401, f"invalid token: {exc}"
            self.verified[token] = claims
        if claims["exp"] < self.cloud.clock.time():
            return 401, "token expired"
        audiences = {service["uri"], service["uri"] + "/", *service.get("customAudiences", [])}
        audience = claims.get("aud")
        if (audience if isinstance(audience, str) else "") not in audiences:
            return 401, f"wrong audience {audience!r}; expected {service['uri']}"
        email = claims.get("email", "")
        if not {f"serviceAccount:{email}", f"user:{email}", "allAuthenticatedUsers"} & members:
            return 403, f"{email} lacks roles/run.invoker on the service"
        return None

    async def handle(self, name: str, request: Request) -> Reply:
        started = time.perf_counter()
        service = self.run.data["services"].get(name)
        if service is None:
            return _text(404, "Service not found\n")
        refused = self._authorized(service, request)
        revision = self.run.data["revisions"].get(run_model.pick(service) or "")
        if refused:
            page = FORBIDDEN if refused[0] == 403 else UNAUTHORIZED
            reply = _text(refused[0], page.format(path=request.path), "text/html; charset=UTF-8")
            self._log(service, revision, request, reply[0], len(reply[2]), started)
            return reply
        if revision is None:
            return _text(503, "Service Unavailable: no ready revision\n")
        try:
            instance, _ = await self.run.instances.ensure(revision)
        except Exception as exc:
            self._log(service, revision, request, 503, 0, started, text=str(exc))
            return _text(503, "Service Unavailable\n")
        timeout = duration_seconds(revision.get("timeout"), 300) - (time.perf_counter() - started)
        instance.active += 1
        try:
            return await self._forward(service, revision, instance, request, started, timeout)
        finally:
            instance.active -= 1
            instance.last_used = time.monotonic()

    async def _forward(
        self,
        service: dict[str, Any],
        revision: dict[str, Any],
        instance: Any,
        request: Request,
        started: float,
        timeout: float,
    ) -> Reply:
        trace = uuid.uuid4().hex
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        headers += [
            ("X-Cloud-Trace-Context", f"{trace}/1;o=1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", request.remote or "127.0.0.1"),
        ]
        pool = self.pools.get(instance.port)
        if pool is None:
            pool = self.pools[instance.port] = Pool(instance.port)
        try:
            upstream = await pool.request(
                request.method, request.target, headers, request.body, max(timeout, 0.001)
            )
        except TimeoutError:
            self._log(service, revision, request, 504, 24, started, text=TIMEOUT_TEXT, trace=trace)
            return _text(504, "upstream request timeout")
        except (UpstreamError, OSError):
            self._log(service, revision, request, 503, 0, started, trace=trace)
            return _text(503, "Service Unavailable\n")
        out = [(k, v) for k, v in upstream.headers if k.lower() not in HOP_BY_HOP]
        self._log(
            service, revision, request, upstream.status, len(upstream.body), started, trace=trace
        )
        return upstream.status, out, upstream.body

    def _log(
        self,
        service: dict[str, Any],
        revision: dict[str, Any] | None,
        request: Request,
        status: int,
        size: int,
        started: float,
        text: str | None = None,
        trace: str | None = None,
    ) -> None:
        _, project, _, location, _, service_id = service["name"].split("/")
        latency = time.perf_counter() - started
        size_in = len(request.body) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        entry: dict[str, Any] = {
            "logName": f"projects/{project}/logs/run.googleapis.com%2Frequests",
            "resource": {
                "type": "cloud_run_revision",
                "labels": {
                    "project_id": project,
                    "service_name": service_id,
                    "location": location,
                    "revision_name": (revision or {}).get("name", "").rsplit("/", 1)[-1],
                    "configuration_name": service_id,
                },
            },
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "httpRequest": {
                "requestMethod": request.method,
                "requestUrl": f"{service['uri']}{request.target}",
                "requestSize": str(size_in),
                "status": status,
                "responseSize": str(size),
                "userAgent": request.header("User-Agent"),
                "remoteIp": request.remote,
                "serverIp": "127.0.0.1",
                "latency": f"{latency:.9f}s",
                "protocol": "HTTP/1.1",
            },
        }
        if trace:
            entry["trace"] = f"projects/{project}/traces/{trace}"
        if text:
            entry["textPayload"] = text
        # Written after the response is on its way: logging is not on the request's path.
        asyncio.get_running_loop().call_soon(self.cloud.logs.write, entry)
