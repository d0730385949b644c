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

from aiohttp import web
from multidict import CIMultiDict

from opslib.localcloud import run_model, tokens
from opslib.localcloud.clock import duration_seconds
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.upstream import Pool, UpstreamError

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


class Front:
    """The per-service listeners, and the proxy they share."""

    def __init__(self, cloud: Cloud, run: Any) -> None:
        self.cloud, self.run = cloud, run
        self.sites: dict[str, web.AppRunner] = {}
        self.pools: dict[int, Pool] = {}
        self.verified: dict[str, dict[str, Any]] = {}

    async def ensure(self, service: dict[str, Any]) -> None:
        """Listen on the service's URL (idempotent)."""
        if service["name"] in self.sites:
            return
        app = web.Application(client_max_size=32 * 1024 * 1024)
        name = service["name"]

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(name, request)

        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", service["_port"], reuse_address=True).start()
        self.sites[name] = runner

    async def remove(self, service: dict[str, Any]) -> None:
        runner = self.sites.pop(service["name"], None)
        if runner:
            await runner.cleanup()

    async def close(self) -> None:
        for name in list(self.sites):
            await self.sites.pop(name).cleanup()
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def _authorized(self, service: dict[str, Any], request: web.Request) -> tuple[int, str] | None:
        """None when the request may pass; else (status, reason)."""
        bindings = service.get("_iam", {}).get("bindings", [])
        members = {
            m for b in bindings if b.get("role") in INVOKER_ROLES for m in b.get("members", [])
        }
        if service.get("invokerIamDisabled") or "allUsers" in members:
            return None
        header = request.headers.get("Authorization", "")
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

    async def handle(self, name: str, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        service = self.run.data["services"].get(name)
        if service is None:
            return web.Response(status=404, text="Service not found")
        body = await request.read()
        refused = self._authorized(service, request)
        revision_name = run_model.pick(service)
        revision = self.run.data["revisions"].get(revision_name or "")
        if refused:
            status, _ = refused
            page = FORBIDDEN if status == 403 else UNAUTHORIZED
            response = web.Response(
                status=status, text=page.format(path=request.path), content_type="text/html"
            )
            self._log(
                service, revision, request, body, response.status, len(response.text or ""), started
            )
            return response
        if revision is None:
            return web.Response(status=503, text="Service Unavailable: no ready revision")
        try:
            instance, _ = await self.run.instances.ensure(revision)
        except Exception as exc:
            self._log(service, revision, request, body, 503, 0, started, text=str(exc))
            return web.Response(status=503, text="Service Unavailable")
        timeout = duration_seconds(revision.get("timeout"), 300) - (time.perf_counter() - started)
        instance.active += 1
        try:
            return await self._forward(service, revision, instance, request, body, started, timeout)
        finally:
            instance.active -= 1
            instance.last_used = time.monotonic()

    async def _forward(
        self,
        service: dict[str, Any],
        revision: dict[str, Any],
        instance: Any,
        request: web.Request,
        body: bytes,
        started: float,
        timeout: float,
    ) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        trace = uuid.uuid4().hex
        headers.update(
            {
                "X-Cloud-Trace-Context": f"{trace}/1;o=1",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-For": request.remote or "127.0.0.1",
            }
        )
        pool = self.pools.get(instance.port)
        if pool is None:
            pool = self.pools[instance.port] = Pool(instance.port)
        try:
            upstream = await pool.request(
                request.method,
                str(request.rel_url),
                list(headers.items()),
                body,
                max(timeout, 0.001),
            )
        except TimeoutError:
            self._log(
                service, revision, request, body, 504, 24, started, text=TIMEOUT_TEXT, trace=trace
            )
            return web.Response(status=504, text="upstream request timeout")
        except (UpstreamError, OSError):
            self._log(service, revision, request, body, 503, 0, started, trace=trace)
            return web.Response(status=503, text="Service Unavailable")
        out = CIMultiDict((k, v) for k, v in upstream.headers if k.lower() not in HOP_BY_HOP)
        response = web.Response(status=upstream.status, body=upstream.body, headers=out)
        payload = upstream.body
        self._log(
            service, revision, request, body, response.status, len(payload), started, trace=trace
        )
        return response

    def _log(
        self,
        service: dict[str, Any],
        revision: dict[str, Any] | None,
        request: web.Request,
        body: bytes,
        status: int,
        size: int,
        started: float,
        text: str | None = None,
        trace: str | None = None,
    ) -> None:
        _, project, _, location, _, service_id = service["name"].split("/")
        latency = time.perf_counter() - started
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
                "requestUrl": f"{service['uri']}{request.rel_url}",
                "requestSize": str(
                    len(body) + sum(len(k) + len(v) + 4 for k, v in request.headers.items())
                ),
                "status": status,
                "responseSize": str(size),
                "userAgent": request.headers.get("User-Agent", ""),
                "remoteIp": request.remote or "",
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
