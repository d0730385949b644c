"""Cloud Run Admin API v2 backend: services, revisions and operations, and their rollouts.

Create and update answer an unfinished Operation; the rollout (start the new revision's
instance, wait for it to listen) runs in the background and `operations.get` reports it done,
with the Service or with the revision's failure. A revision that fails leaves traffic on the
last good revision. Each service has its own URL: a port on 127.0.0.1 served by `front`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from opslib.localcloud import resources
from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, already_exists, failed_precondition
from opslib.localcloud.run import services
from opslib.localcloud.run.container import StartFailed
from opslib.localcloud.run.instances import IDLE_SECONDS, Instances, free_port

TYPE = "type.googleapis.com/google.cloud.run.v2."
# What a restart tells of the work a killed localcloud left unfinished.
INTERRUPTED = "localcloud stopped before the operation finished; send the request again."


class RunBackend(CollectionBackend):
    """Services, revisions and operations; `instances` runs them, `front` serves their URLs."""

    COLLECTION = "run"
    MAPS = ("services", "revisions", "operations")

    def __init__(self, cloud: Cloud) -> None:
        super().__init__(cloud)
        self.instances = Instances(cloud)
        self.front: Any = None  # front.Front, set by the server
        self.tasks: set[asyncio.Task[None]] = set()
        self._recover()

    def _recover(self) -> None:
        """After a crash, as Google ends an interrupted long-running operation: the revision
        being started failed, the service back on its last ready revision (or failed, saying
        why), and every operation done with ABORTED."""
        for service in self.data["services"].values():
            if not service.get("reconciling"):
                continue
            revision = self.data["revisions"].get(service.get("latestCreatedRevision", ""))
            if revision is not None and revision.get("reconciling"):
                short = revision["name"].rsplit("/", 1)[-1]
                error = ApiError(
                    "ABORTED",
                    f"Revision '{short}' is not ready and cannot serve traffic. " + INTERRUPTED,
                )
                self._fail(service, revision, error, reason="INTERNAL")
            else:
                self._settle(service)
        for op in self.data["operations"].values():
            if not op.get("done") and op["metadata"].get("@type") == TYPE + "Service":
                op["done"] = True
                op["error"] = ApiError("ABORTED", INTERRUPTED).rpc_status()
        self.save()

    def service(self, name: str) -> dict[str, Any]:
        return resources.found(self.data["services"], name)

    def revision(self, name: str) -> dict[str, Any]:
        return resources.found(self.data["revisions"], name)

    def view(self, service: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in service.items() if not k.startswith("_")}

    def operation(self, service: dict[str, Any]) -> dict[str, Any]:
        name = f"{service['name'].rsplit('/services/', 1)[0]}/operations/{uuid.uuid4()}"
        op = {
            "name": name,
            "metadata": {"@type": TYPE + "Service", **self.view(service)},
            "done": False,
        }
        self.data["operations"][name] = op
        return op

    def finish(
        self, op: dict[str, Any], service: dict[str, Any], error: ApiError | None = None
    ) -> None:
        op["done"] = True
        op["metadata"] = {"@type": TYPE + "Service", **self.view(service)}
        if error:
            op["error"] = error.rpc_status()
        else:
            op["response"] = {"@type": TYPE + "Service", **self.view(service)}
        self.save()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def new_service(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        now = rfc3339(self.cloud.clock.now())
        port = free_port()
        service = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": "0",
            "createTime": now,
            "updateTime": now,
            "creator": "localcloud@localhost",
            "lastModifier": "localcloud@localhost",
            "uri": f"http://127.0.0.1:{port}",
            "urls": [f"http://127.0.0.1:{port}"],
            "_port": port,
            "_iam": {"version": 1, "etag": "BwYAAAAAAAA=", "bindings": []},
        }
        return service

    def apply(self, service: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Record a new spec; start a rollout; return the operation."""
        old_template = service.get("template")
        new_revision = old_template is None or services.template_key(
            old_template
        ) != services.template_key(spec["template"])
        service.update(spec)
        service["generation"] = str(int(service["generation"]) + 1)
        service["updateTime"] = rfc3339(self.cloud.clock.now())
        service["reconciling"] = True
        service["terminalCondition"] = {"type": "Ready", "state": "CONDITION_RECONCILING"}
        service["etag"] = f'"{uuid.uuid4().hex[:16]}"'
        self.data["services"][service["name"]] = service
        op = self.operation(service)
        self.save()
        self.spawn(self.rollout(service, op, new_revision))
        return op

    async def rollout(
        self, service: dict[str, Any], op: dict[str, Any], new_revision: bool
    ) -> None:
        """The operation's work; then traffic may have moved: `rebalance`."""
        await self._roll_out(service, op, new_revision)
        self.rebalance()

    async def _roll_out(
        self, service: dict[str, Any], op: dict[str, Any], new_revision: bool
    ) -> None:
        if self.front:
            await self.front.ensure(service)
        if new_revision:
            try:
                revision = self._create_revision(service)
            except ApiError as error:
                self._settle(service, failed=error.message)
                self.finish(op, service, error)
                return
            try:
                await self._start(service, revision)
            except ApiError as error:
                self._fail(service, revision, error)
                self.finish(op, service, error)
                return
            service["latestReadyRevision"] = revision["name"]
        self._settle(service)
        self.finish(op, service)

    def _create_revision(self, service: dict[str, Any]) -> dict[str, Any]:
        service_id = service["name"].rsplit("/", 1)[-1]
        template = service["template"]
        short = template.get("revision") or services.revision_name(
            service_id, int(service["generation"])
        )
        name = f"{service['name']}/revisions/{short}"
        if name in self.data["revisions"]:
            raise already_exists(f"revision named '{short}' already exists")
        revision = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": "1",
            "service": service["name"],
            "createTime": rfc3339(self.cloud.clock.now()),
            "launchStage": "GA",
            # A revision carries its template's labels and annotations, as Cloud Run's do.
            **{k: template[k] for k in ("labels", "annotations") if template.get(k)},
            "containers": template["containers"],
            "timeout": template["timeout"],
            "scaling": template["scaling"],
            "maxInstanceRequestConcurrency": template["maxInstanceRequestConcurrency"],
            "serviceAccount": template.get("serviceAccount")
            or _default_account(self.cloud, service),
            "conditions": [{"type": "Ready", "state": "CONDITION_RECONCILING"}],
            "reconciling": True,
            "etag": f'"{uuid.uuid4().hex[:16]}"',
        }
        self.data["revisions"][name] = revision
        service["latestCreatedRevision"] = name
        self.save()
        return revision

    async def _start(self, service: dict[str, Any], revision: dict[str, Any]) -> None:
        image = revision["containers"][0]["image"]
        digest = self.cloud.registry.resolve_image(image)
        short = revision["name"].rsplit("/", 1)[-1]
        if digest is None:
            raise failed_precondition(
                f"Revision '{short}' is not ready and cannot serve traffic. "
                f"Image '{image}' not found."
            )
        revision["_imageDigest"] = digest
        # Where Run v2 reports the resolved digest: ContainerStatus, one per container.
        name = revision["containers"][0].get("name") or ""
        revision["containerStatuses"] = [
            {**({"name": name} if name else {}), "imageDigest": digest}
        ]
        try:
            await self.instances.start(revision)
        except StartFailed as exc:
            raise failed_precondition(
                f"Revision '{short}' is not ready and cannot serve traffic. {exc}"
            ) from None
        revision["conditions"] = [
            {
                "type": "Ready",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": rfc3339(self.cloud.clock.now()),
            }
        ]
        revision["reconciling"] = False

    def _fail(
        self,
        service: dict[str, Any],
        revision: dict[str, Any],
        error: ApiError,
        reason: str = "",
    ) -> None:
        reason = reason or (
            "HEALTH_CHECK_CONTAINER_ERROR"
            if "listen on the port" in error.message
            else "CONTAINER_MISSING"
        )
        if "SECRETS_ACCESS_CHECK_FAILED" in error.message:
            reason = "SECRETS_ACCESS_CHECK_FAILED"
        revision["conditions"] = [
            {
                "type": "Ready",
                "state": "CONDITION_FAILED",
                "reason": reason,
                "message": error.message,
                "lastTransitionTime": rfc3339(self.cloud.clock.now()),
            }
        ]
        revision["reconciling"] = False
        good = service.get("latestReadyRevision")
        if good:  # traffic stays where it was: pin it to the last good revision
            service["traffic"] = [
                {**t, "type": services.BY_REVISION, "revision": good.rsplit("/", 1)[-1]}
                if t["type"] == services.LATEST
                else t
                for t in service["traffic"]
            ]
        self._settle(service, failed=error.message)

    def _settle(self, service: dict[str, Any], failed: str | None = None) -> None:
        now = rfc3339(self.cloud.clock.now())
        service["reconciling"] = False
        service["observedGeneration"] = service["generation"]
        state = "CONDITION_FAILED" if failed else "CONDITION_SUCCEEDED"
        service["terminalCondition"] = {
            "type": "Ready",
            "state": state,
            "lastTransitionTime": now,
            **({"reason": "REVISION_FAILED", "message": failed} if failed else {}),
        }
        service["conditions"] = [
            {"type": "RoutesReady", "state": state, "lastTransitionTime": now},
            {"type": "ConfigurationsReady", "state": state, "lastTransitionTime": now},
        ]
        latest = service.get("latestReadyRevision")
        service["trafficStatuses"] = [
            {
                "type": t["type"],
                "percent": t["percent"],
                "revision": (latest or "").rsplit("/", 1)[-1]
                if t["type"] == services.LATEST
                else t.get("revision"),
                **({"tag": t["tag"]} if t.get("tag") else {}),
            }
            for t in service["traffic"]
        ]
        self.save()

    def serving(self, service: dict[str, Any]) -> set[str]:
        """Full names of the revisions that receive traffic."""
        base = service["name"] + "/revisions/"
        latest = service.get("latestReadyRevision")
        return {
            latest if t["type"] == services.LATEST else base + t["revision"]
            for t in service.get("traffic", [])
            if t["percent"] and (t["type"] != services.LATEST or latest)
        }

    def receiving(self) -> set[str]:
        """Every revision that receives traffic, of every service."""
        return {name for s in self.data["services"].values() for name in self.serving(s)}

    def warm(self) -> set[str]:
        """Revisions whose min instances keep an instance running: only those with traffic."""
        keep = set()
        for service in self.data["services"].values():
            floor = int((service.get("scaling") or {}).get("minInstanceCount", 0))
            for name in self.serving(service):
                revision = self.data["revisions"].get(name, {})
                if max(floor, int((revision.get("scaling") or {}).get("minInstanceCount", 0))) > 0:
                    keep.add(name)
        return keep

    def scale_in(self, idle: float = IDLE_SECONDS) -> int:
        """Stop the instances no one uses (`Instances.scale_in`); how many."""
        return self.instances.scale_in(self.receiving(), self.warm(), idle)

    def rebalance(self) -> None:
        """After traffic moved (a rollout's end): revisions that lost it give up their instances
        once their requests are done, and those it reached with min instances get one."""
        self.scale_in()
        self.spawn(self.warm_up())

    def retire(self, instance: Any) -> None:
        """The front's call when a `retired` instance's last request has ended."""
        revision = self.data["revisions"].get(instance.revision)
        service = self.data["services"].get((revision or {}).get("service", ""))
        if service and instance.revision in self.serving(service):
            instance.retired = False  # traffic came back to it meanwhile
        else:
            self.instances.release(instance)

    async def warm_up(self) -> None:
        """An instance for each revision that serves traffic with min instances > 0."""
        for name in self.warm():
            revision = self.data["revisions"].get(name)
            if revision and revision.get("_imageDigest"):  # not deleted meanwhile, nor failed
                with contextlib.suppress(StartFailed):
                    await self.instances.ensure(revision)

    async def resume(self) -> None:
        """After a restart: fronts for every service, instances for min-instance revisions."""
        for service in self.data["services"].values():
            if self.front:
                await self.front.ensure(service)
        await self.warm_up()

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        # A rollout or warm-up stopped while its instance starts terminates it: wait for that.
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.instances.close()
        if self.front:
            await self.front.close()

    async def stop_all(self) -> None:
        """Stop every instance and listener (before a reset): what closing does."""
        await self.close()


def _default_account(cloud: Cloud, service: dict[str, Any]) -> str:
    """Cloud Run's default runtime identity: the Compute Engine default service account."""
    number = cloud.project_number(service["name"].split("/")[1])
    return f"{number}-compute@developer.gserviceaccount.com"
