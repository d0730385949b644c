"""Cloud Run's front end, one listener per service URL: IAM, routing, timeouts, request logs.

A private service (the default) answers 403 without a token and 401 with a bad one; a token
must be signed by localcloud, carry the service URL (or a custom audience) as `aud`, and name
a principal with roles/run.invoker on the service (or allUsers). A request that outlives the
revision's timeout gets 504 while the instance keeps running. Every request is logged to
`run.googleapis.com/requests` with `httpRequest`. A request in flight on a revision that loses
its traffic gets its answer; the instance stops after its last one (`Instances.scale_in`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any

from opslib.localcloud import tokens
from opslib.localcloud.clock import duration_seconds
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.run import services
from opslib.localcloud.run.upstream import Listener, Pool, Request, Response

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
# A verified token: its exp, aud, email, and the principals it stands for in a policy.
Identity = tuple[float, Any, str, frozenset[str]]
# What a service's spec and policy allow: no check at all, the members, the audiences.
Access = tuple[bool, frozenset[str], frozenset[str]]
TOKEN_CACHE = 4096


def _text(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return status, [("Content-Type", content_type)], text.encode()


class Front:
    """The per-service listeners, and the pooled connections to instances they share."""

    def __init__(self, cloud: Cloud, run: Any) -> None:
        self.cloud, self.run = cloud, run
        self.loop: asyncio.AbstractEventLoop  # set by the first `ensure`
        self.servers: dict[str, asyncio.Server] = {}
        self.connections: dict[str, set[Listener]] = {}
        self.pools: dict[int, Pool] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # Per-request work done once: token checks, policies, and each service's log labels.
        self.verified: dict[str, Identity] = {}
        self.access: dict[str, tuple[dict[str, Any], Any, Any, Access]] = {}
        self.labels: dict[str, tuple[str, str, str, str]] = {}

    async def ensure(self, service: dict[str, Any]) -> None:
        """Listen on the service's URL (idempotent)."""
        name = service["name"]
        if name in self.servers:
            return
        peers = self.connections[name] = set()
        handle = functools.partial(self.handle, name)
        self.loop = asyncio.get_running_loop()  # once: each get_running_loop() is a getpid()
        self.servers[name] = await self.loop.create_server(
            lambda: Listener(handle, peers), "127.0.0.1", service["_port"], reuse_address=True
        )

    async def remove(self, service: dict[str, Any]) -> None:
        await self._stop(service["name"])

    async def _stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is None:
            return
        server.close()
        for listener in list(self.connections.pop(name, set())):
            listener.close()
        await server.wait_closed()

    async def close(self) -> None:
        for name in list(self.servers):
            await self._stop(name)
        for task in list(self.tasks):
            task.cancel()
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def _access(self, service: dict[str, Any]) -> Access:
        """The service's invoker rules, rebuilt only when its spec (etag) or policy changes."""
        iam, etag = service.get("_iam"), service.get("etag")
        cached = self.access.get(service["name"])
        if cached and cached[0] is service and cached[1] == etag and cached[2] is iam:
            return cached[3]
        bindings = (iam or {}).get("bindings", [])
        members = frozenset(
            m for b in bindings if b.get("role") in INVOKER_ROLES for m in b.get("members", [])
        )
        uri = service["uri"]
        access = (
            bool(service.get("invokerIamDisabled")) or "allUsers" in members,
            members,
            frozenset((uri, uri + "/", *service.get("customAudiences", []))),
        )
        self.access[service["name"]] = (service, etag, iam, access)
        return access

    def _identity(self, token: str) -> Identity:
        """A token's claims that matter here; the signature is checked once per token."""
        identity = self.verified.get(token)
        if identity is None:
            claims = tokens.verify(self.cloud, token)
            email = claims.get("email", "")
            principals = frozenset(
                (f"serviceAccount:{email}", f"user:{email}", "allAuthenticatedUsers")
            )
            identity = (claims["exp"], claims.get("aud"), email, principals)
            if len(self.verified) >= TOKEN_CACHE:
                self.verified.clear()
            self.verified[token] = identity
        return identity

    def _authorized(self, service: dict[str, Any], request: Request) -> tuple[int, str] | None:
        """None when the request may pass; else (status, reason)."""
        unchecked, members, audiences = self._access(service)
        if unchecked:
            return None
        header = request.header("Authorization")
        if not header.startswith("Bearer "):
            return 403, "no identity token"
        try:
            expires, audience, email, principals = self._identity(header[7:].strip())
        except tokens.InvalidToken as exc:
            return 401, f"invalid token: {exc}"
        if expires < self.cloud.clock.time():
            return 401, "token expired"
        if (audience if isinstance(audience, str) else "") not in audiences:
            return 401, f"wrong audience {audience!r}; expected {service['uri']}"
        if principals.isdisjoint(members):
            return 403, f"{email} lacks roles/run.invoker on the service"
        return None

    def handle(self, name: str, listener: Listener, request: Request) -> None:
        """Answer one request: refuse it, or forward it to an instance (started if need be)."""
        started = time.perf_counter()
        service = self.run.data["services"].get(name)
        if service is None:
            listener.reply(request, *_text(404, "Service not found\n"))
            return
        refused = self._authorized(service, request)
        revision = self.run.data["revisions"].get(services.pick(service) or "")
        if refused:
            page = FORBIDDEN if refused[0] == 403 else UNAUTHORIZED
            reply = _text(refused[0], page.format(path=request.path), "text/html; charset=UTF-8")
            self._log(service, revision, request, reply[0], len(reply[2]), started)
            listener.reply(request, *reply)
            return
        if revision is None:
            listener.reply(request, *_text(503, "Service Unavailable: no ready revision\n"))
            return
        instance = self.run.instances.running.get(revision["name"])
        if instance is None or instance.process.returncode is not None:
            task = self.loop.create_task(self._cold(service, revision, listener, request, started))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        self._forward(service, revision, instance, listener, request, started)

    async def _cold(
        self,
        service: dict[str, Any],
        revision: dict[str, Any],
        listener: Listener,
        request: Request,
        started: float,
    ) -> None:
        """Forward once the revision has an instance (a cold start); 503 if it cannot start."""
        try:
            instance, _ = await self.run.instances.ensure(revision)
        except Exception as exc:
            self._log(service, revision, request, 503, 0, started, text=str(exc))
            listener.reply(request, *_text(503, "Service Unavailable\n"))
            return
        self._forward(service, revision, instance, listener, request, started)

    def _forward(
        self,
        service: dict[str, Any],
        revision: dict[str, Any],
        instance: Any,
        listener: Listener,
        request: Request,
        started: float,
    ) -> None:
        timeout = duration_seconds(revision.get("timeout"), 300) - (time.perf_counter() - started)
        trace = os.urandom(16).hex()  # 32 hex digits, as uuid4().hex and Cloud Run's trace ids
        lines = [f"{k}: {v}\r\n" for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        lines.append(
            f"X-Cloud-Trace-Context: {trace}/1;o=1\r\nX-Forwarded-Proto: https\r\n"
            f"X-Forwarded-For: {request.remote or '127.0.0.1'}\r\n"
        )
        pool = self.pools.get(instance.port)
        if pool is None:
            pool = self.pools[instance.port] = Pool(instance.port, self.loop)

        def done(upstream: Response | None, error: BaseException | None) -> None:
            instance.active -= 1
            instance.last_used = time.monotonic()
            if upstream is not None:
                out = [(k, v) for k, v in upstream.headers if k.lower() not in HOP_BY_HOP]
                status, size = upstream.status, len(upstream.body)
                self._log(service, revision, request, status, size, started, trace, instance)
                listener.reply(request, status, out, upstream.body)
            elif isinstance(error, TimeoutError):
                self._log(
                    service, revision, request, 504, 24, started, trace, instance, TIMEOUT_TEXT
                )
                listener.reply(request, *_text(504, "upstream request timeout"))
            else:  # UpstreamError or OSError: the instance is gone or answered nonsense
                self._log(service, revision, request, 503, 0, started, trace, instance)
                listener.reply(request, *_text(503, "Service Unavailable\n"))
            # Its revision lost its traffic while this request ran: the last one out stops it.
            # (getattr: the scripted instance of tests/front_edges.py has only what routing needs.)
            if getattr(instance, "retired", False) and not instance.active:
                self.run.retire(instance)

        instance.active += 1
        head = "".join(lines)
        pool.send(request.method, request.target, head, request.body, max(timeout, 0.001), done)

    def _log(
        self,
        service: dict[str, Any],
        revision: dict[str, Any] | None,
        request: Request,
        status: int,
        size: int,
        started: float,
        trace: str | None = None,
        instance: Any = None,
        text: str | None = None,
    ) -> None:
        """Note the latency now; build and store the entry once the response is on its way."""
        latency = time.perf_counter() - started
        instance_id = instance.instance_id if instance is not None else None
        self.loop.call_soon(
            self._write_log,
            service,
            revision,
            request,
            (status, size, latency),
            text,
            trace,
            instance_id,
        )

    def _write_log(
        self,
        service: dict[str, Any],
        revision: dict[str, Any] | None,
        request: Request,
        answer: tuple[int, int, float],
        text: str | None,
        trace: str | None,
        instance_id: str | None,
    ) -> None:
        status, size, latency = answer
        labels = self.labels.get(service["name"])
        if labels is None:
            _, project, _, location, _, service_id = service["name"].split("/")
            log_name = f"projects/{project}/logs/run.googleapis.com%2Frequests"
            labels = self.labels[service["name"]] = (log_name, project, location, service_id)
        log_name, project, location, service_id = labels
        size_in = len(request.body) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        entry: dict[str, Any] = {
            "logName": log_name,
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
        if instance_id:  # as Cloud Run labels the request log: which instance served it
            entry["labels"] = {"instanceId": instance_id}
        if text:
            entry["textPayload"] = text
        self.cloud.logs.write(entry)
