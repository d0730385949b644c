"""The localcloud process: every API on one port of 127.0.0.1, control routes under /_localcloud/.

    python -m opslib.localcloud.server --port 8780 --state .localcloud

It writes `<state>/server.json` (pid, port, url) once it listens, and on SIGTERM stops every
service instance it started before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from opslib.localcloud import children, tokens
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.cloudbuild import api as cloudbuild
from opslib.localcloud.logging import api as logging_api
from opslib.localcloud.logging.store import LogStore
from opslib.localcloud.monitoring import api as monitoring_api
from opslib.localcloud.router import Router
from opslib.localcloud.run import front as run_front
from opslib.localcloud.run import jobs_api
from opslib.localcloud.run import services_api as run_api
from opslib.localcloud.run.backend import RunBackend
from opslib.localcloud.scheduler import api as scheduler
from opslib.localcloud.scheduler import runner as scheduler_runner
from opslib.localcloud.secretmanager import api as secretmanager
from opslib.localcloud.storage import api as storage

CONTROL = "/_localcloud"


def build(cloud: Cloud) -> tuple[web.Application, Router]:
    """The aiohttp application with every emulated API registered."""
    router = Router()
    logs, runner, run = _register(router, cloud)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["cloud"], app["router"] = cloud, router
    _control_routes(app, cloud, router, logs)
    app.router.add_route("*", "/{tail:.*}", router.dispatch)

    async def startup(app: web.Application) -> None:
        # The processes a killed predecessor on this state left (its work: each backend's _recover).
        for what in children.stop_leftovers(cloud.state_dir):
            print(f"stopped {what}, left running by the previous localcloud", flush=True)
        monitoring = cloud.services["monitoring"]
        monitoring.loop = asyncio.get_running_loop()
        app["grpc"] = _GrpcStarter(cloud, router)
        app["grpc"].start()  # in a thread: its imports take a second we need not wait for
        await runner.start()
        await run.resume()
        app["reaper"] = asyncio.create_task(_housekeeping(logs, run, monitoring))

    async def cleanup(app: web.Application) -> None:
        app["reaper"].cancel()
        app["grpc"].stop()
        await cloud.services["monitoring"].sender.close()
        cloud.services["monitoring"].flush()  # what the last tick did not save
        await runner.stop()
        for service in cloud.services.values():
            close = getattr(service, "close", None)
            if close:
                await close()
        logs.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app, router


class _GrpcStarter(threading.Thread):
    """Starts Monitoring's gRPC face off the event loop; `/_localcloud/health` names its
    address once it listens (clients wait for it), and `stop` works at any point."""

    def __init__(self, cloud: Cloud, router: Router) -> None:
        super().__init__(daemon=True, name="localcloud-grpc")
        self.cloud, self.router = cloud, router
        self.front: Any = None
        self.stopped = threading.Event()

    def run(self) -> None:
        from opslib.localcloud.monitoring import grpc_front

        monitoring = self.cloud.services["monitoring"]
        front = grpc_front.Front(monitoring, monitoring.loop, self.router.calls)
        front.start()
        self.front = front
        if self.stopped.is_set():
            front.stop()
            return
        self.cloud.grpc_port = front.port

    def stop(self) -> None:
        self.stopped.set()
        if self.front is not None:
            self.front.stop()


def _register(router: Router, cloud: Cloud) -> tuple[LogStore, scheduler_runner.Runner, RunBackend]:
    """Each API's routes, and the interfaces between APIs set on `cloud` (see cloud.py)."""
    logs = logging_api.register(router, cloud)
    cloud.logs = logs
    cloud.secrets = cloud.services["secretmanager"] = secretmanager.register(router, cloud)
    sched = scheduler.register(router, cloud)
    cloud.services["scheduler"] = sched
    runner = scheduler_runner.Runner(cloud, sched)
    cloud.services["scheduler_runner"] = runner
    cloud.objects = cloud.services["storage"] = storage.register(router, cloud)
    cloud.registry = cloud.services["cloudbuild"] = cloudbuild.register(router, cloud)
    run = run_api.register(router, cloud)
    run.front = run_front.Front(cloud, run)
    cloud.services["run"] = run
    cloud.services["runjobs"] = jobs_api.register(router, cloud, run)
    monitoring = cloud.services["monitoring"] = monitoring_api.register(router, cloud)
    logs.watchers.append(monitoring.observe)
    return logs, runner, run


async def _housekeeping(logs: LogStore, run: RunBackend, monitoring: Any) -> None:
    """Flush logs and close expired incidents each second; every 5 s stop the instances no
    one uses (those of revisions without traffic, idle ones of min-0 revisions)."""
    tick = 0
    while True:
        await asyncio.sleep(1)
        logs.flush()
        monitoring.close_expired()
        monitoring.flush()
        tick += 1
        if tick % 5 == 0:
            run.scale_in()


def _control_routes(app: web.Application, cloud: Cloud, router: Router, logs: LogStore) -> None:
    """The routes tests and the CLI drive localcloud by, and the metadata server's."""
    _status_routes(app, cloud, router, logs)
    _clock_routes(app, cloud)
    _state_routes(app, cloud, logs)
    _identity_routes(app, cloud)


def _status_routes(app: web.Application, cloud: Cloud, router: Router, logs: LogStore) -> None:
    """What the server is and what it was asked: health, routes, calls, a build's log."""

    async def health(_: web.Request) -> web.Response:
        # The state directory lets a second `start` on this port name the command that stops us.
        answer = {"status": "ok", "pid": os.getpid(), "url": cloud.base_url}
        # Monitoring's official client speaks gRPC only: its address, once it listens.
        answer["grpc"] = f"{cloud.host}:{cloud.grpc_port}" if cloud.grpc_port else ""
        return web.json_response({**answer, "state": str(cloud.state_dir)})

    async def routes(_: web.Request) -> web.Response:
        return web.json_response({"routes": [f"{m} {p}" for m, p in router.table()]})

    async def calls(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        made = router.calls[since:]
        return web.json_response(
            {"next": len(router.calls), "calls": [{"method": m, "path": p} for m, p in made]}
        )

    async def build_log(request: web.Request) -> web.Response:
        build_id = request.match_info["build"]
        lines = [
            e.get("textPayload", "")
            for e in logs.entries
            if e["resource"].get("labels", {}).get("build_id") == build_id
        ]
        if not lines:
            return web.Response(status=404, text=f"no log for build {build_id}\n")
        return web.Response(text="\n".join(lines) + "\n")

    app.router.add_get(f"{CONTROL}/health", health)
    app.router.add_get(f"{CONTROL}/routes", routes)
    app.router.add_get(f"{CONTROL}/calls", calls)
    app.router.add_get(CONTROL + "/builds/{build}", build_log)


def _clock_routes(app: web.Application, cloud: Cloud) -> None:
    """Read localcloud's clock, or move it forward (firing the schedules that come due)."""

    async def clock(_: web.Request) -> web.Response:
        return web.json_response({"now": rfc3339(cloud.clock.now()), "offset": cloud.clock.offset})

    async def advance(request: web.Request) -> web.Response:
        body = await request.json()
        seconds = float(body.get("seconds", 0))
        if seconds < 0:
            return web.json_response({"error": "the clock only moves forward"}, status=400)
        fired = await cloud.services["scheduler_runner"].advance(seconds)
        cloud.services["monitoring"].close_expired()  # incidents whose autoClose has passed
        return web.json_response({"now": rfc3339(cloud.clock.now()), "fired": fired})

    app.router.add_get(f"{CONTROL}/clock", clock)
    app.router.add_post(f"{CONTROL}/clock:advance", advance)


def _state_routes(app: web.Application, cloud: Cloud, logs: LogStore) -> None:
    """Reset every API's state, and list or stop the running service instances."""

    async def reset(_: web.Request) -> web.Response:
        for service in list(cloud.services.values()):
            stop_all = getattr(service, "stop_all", None)
            if stop_all:
                await stop_all()
        cloud.store.reset(keep=("localcloud", "projects"))
        for service in cloud.services.values():
            init = getattr(service, "init", None)
            if init:
                init()
        logs.reset()
        return web.json_response({"status": "reset"})

    async def scale_to_zero(_: web.Request) -> web.Response:
        run = cloud.services["run"]
        stopped = run.scale_in(idle=0)
        await run.instances.stopped()
        return web.json_response({"stopped": stopped})

    async def instances(_: web.Request) -> web.Response:
        run = cloud.services["run"].instances

        def shown(i: Any) -> dict[str, Any]:
            return {
                "revision": i.revision,
                "port": i.port,
                "pid": i.process.pid,
                "instanceId": i.instance_id,
            }

        return web.json_response(
            {
                "instances": [shown(i) for i in run.running.values()],
                "stopping": [shown(i) for i in run.stopping.values()],
            }
        )

    app.router.add_post(f"{CONTROL}/reset", reset)
    app.router.add_post(f"{CONTROL}/instances:scaleToZero", scale_to_zero)
    app.router.add_get(f"{CONTROL}/instances", instances)


def _identity_routes(app: web.Application, cloud: Cloud) -> None:
    """Tokens: minted for tests, and the metadata server's for instances."""

    async def token(request: web.Request) -> web.Response:
        body = await request.json()
        email, audience, scope = body.get("email"), body.get("audience"), body.get("scope")
        if email and scope and not audience:  # an OAuth access token, for Google APIs
            return web.json_response({"token": tokens.mint_access(cloud, email, scope)})
        if not email or not audience:
            return web.json_response({"error": "give email and audience (or scope)"}, status=400)
        return web.json_response({"token": tokens.mint(cloud, email, audience)})

    async def metadata_token(request: web.Request) -> web.Response:
        """The metadata server's access token for the instance's service account."""
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.\n")
        return web.json_response(
            {
                "access_token": "localcloud-" + os.urandom(8).hex(),
                "expires_in": 3599,
                "token_type": "Bearer",
            }
        )

    async def metadata_project(request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.\n")
        return web.Response(text=request.query.get("project", "localcloud"))

    app.router.add_post(f"{CONTROL}/token", token)
    token_path = "/computeMetadata/v1/instance/service-accounts/default/token"
    app.router.add_get(token_path, metadata_token)
    app.router.add_get("/computeMetadata/v1/project/project-id", metadata_project)


async def serve(state: Path, port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM or SIGINT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    cloud = Cloud(state, port=sock.getsockname()[1])
    app, _ = build(cloud)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    info: dict[str, Any] = {"pid": os.getpid(), "port": cloud.port, "url": cloud.base_url}
    (state / "server.json").write_text(json.dumps(info))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        (state / "server.json").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcloud")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--state", type=Path, default=Path(".localcloud"))
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    # uvloop takes ~0.3 ms off every request through a service's front (benchmarks/).
    uvloop.run(serve(args.state.resolve(), args.port))


if __name__ == "__main__":
    main()
