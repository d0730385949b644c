"""Cloud Run Admin API v2: the routes for services, their revisions and IAM policy, and the
long-running operations of services and jobs.

Create, update and delete answer Operations; `backend` runs the rollout behind them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opslib.localcloud import resources
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists, failed_precondition
from opslib.localcloud.router import Call, Router
from opslib.localcloud.run import iam, services
from opslib.localcloud.run.backend import TYPE, RunBackend


def register(router: Router, cloud: Cloud) -> RunBackend:
    """Serve the services, IAM, revisions and operations routes; the server keeps the backend."""
    run = RunBackend(cloud)
    base = "/v2/projects/{project}/locations/{location}"
    _services(router, run, base)
    _service_changes(router, run, base)
    iam.routes(
        router,
        base + "/services/{service}",
        lambda call: run.service(_service_name(call)),
        run.save,
    )
    _revisions(router, run, base)
    _operations(router, run, base)
    return run


def _service_name(call: Call) -> str:
    """The service a call's path names."""
    return f"{resources.parent(call)}/services/{call.params['service']}"


def _services(router: Router, run: RunBackend, base: str) -> None:
    """Create, read and list services."""

    async def create(call: Call) -> dict[str, Any]:
        service_id = call.query.get("serviceId", "")
        services.check_service_id(service_id)
        name = f"{resources.parent(call)}/services/{service_id}"
        spec = services.normalize(await call.json())
        if name in run.data["services"]:
            raise already_exists(f"Resource '{name}' already exists.")
        if call.query.get("validateOnly") == "true":
            return {
                "name": f"{name}/operations/validate",
                "done": True,
                "response": {"@type": TYPE + "Service", **spec, "name": name},
            }
        return run.apply(run.new_service(name, spec), spec)

    async def get(call: Call) -> dict[str, Any]:
        return run.view(run.service(_service_name(call)))

    async def list_services(call: Call) -> dict[str, Any]:
        prefix = f"{resources.parent(call)}/services/"
        items = [run.view(s) for n, s in run.data["services"].items() if n.startswith(prefix)]
        return {"services": sorted(items, key=lambda s: s["createTime"], reverse=True)}

    router.add("POST", base + "/services", create)
    router.add("GET", base + "/services", list_services)
    router.add("GET", base + "/services/{service}", get)


def _service_changes(router: Router, run: RunBackend, base: str) -> None:
    """Update and delete a service."""

    async def patch(call: Call) -> dict[str, Any]:
        name = _service_name(call)
        spec = services.normalize(await call.json())
        if name not in run.data["services"]:
            if call.query.get("allowMissing") != "true":
                raise resources.not_found(name)
            return run.apply(run.new_service(name, spec), spec)
        service = run.service(name)
        if service.get("reconciling"):
            raise ApiError(
                "FAILED_PRECONDITION",
                f"Service {name} is being updated; wait for the operation to finish.",
            )
        return run.apply(service, spec)

    async def delete(call: Call) -> dict[str, Any]:
        service = run.service(_service_name(call))
        for revision in [
            r for r in run.data["revisions"].values() if r["service"] == service["name"]
        ]:
            await run.instances.stop(revision["name"])
            del run.data["revisions"][revision["name"]]
        if run.front:
            await run.front.remove(service)
        del run.data["services"][service["name"]]
        op = run.operation(service)
        run.finish(op, service)
        return op

    router.add("PATCH", base + "/services/{service}", patch)
    router.add("DELETE", base + "/services/{service}", delete)


def _revisions(router: Router, run: RunBackend, base: str) -> None:
    """A service's revisions: list, read, delete."""

    async def get_revision(call: Call) -> dict[str, Any]:
        return run.view(run.revision(f"{_service_name(call)}/revisions/{call.params['revision']}"))

    async def list_revisions(call: Call) -> dict[str, Any]:
        name = _service_name(call)
        run.service(name)
        items = [run.view(r) for r in run.data["revisions"].values() if r["service"] == name]
        return {"revisions": sorted(items, key=lambda r: r["createTime"], reverse=True)}

    async def delete_revision(call: Call) -> dict[str, Any]:
        service = run.service(_service_name(call))
        name = f"{service['name']}/revisions/{call.params['revision']}"
        revision = run.revision(name)
        if name in run.serving(service):
            raise failed_precondition(
                f"Revision {call.params['revision']} is serving traffic and cannot be deleted."
            )
        await run.instances.stop(name)
        del run.data["revisions"][name]
        run.save()
        return {
            "name": f"{name}/operations/delete",
            "done": True,
            "response": {"@type": TYPE + "Revision", **run.view(revision)},
        }

    router.add("GET", base + "/services/{service}/revisions", list_revisions)
    router.add("GET", base + "/services/{service}/revisions/{revision}", get_revision)
    router.add("DELETE", base + "/services/{service}/revisions/{revision}", delete_revision)


def _operations(router: Router, run: RunBackend, base: str) -> None:
    """The long-running operations of services and jobs (jobs_backend stores its own here)."""

    async def get_operation(call: Call) -> dict[str, Any]:
        name = f"{resources.parent(call)}/operations/{call.params['operation']}"
        if name not in run.data["operations"]:
            raise ApiError("NOT_FOUND", f"Operation {name} not found.")
        return run.data["operations"][name]

    async def wait_operation(call: Call) -> dict[str, Any]:
        for _ in range(600):
            op = await get_operation(call)
            if op["done"]:
                return op
            await asyncio.sleep(0.1)
        return await get_operation(call)

    async def list_operations(call: Call) -> dict[str, Any]:
        prefix = f"{resources.parent(call)}/operations/"
        return {
            "operations": [o for n, o in run.data["operations"].items() if n.startswith(prefix)]
        }

    router.add("GET", base + "/operations", list_operations)
    router.add("GET", base + "/operations/{operation}", get_operation)
    router.add("POST", base + "/operations/{operation}:wait", wait_operation)
