"""`opslib destroy`: take one automation down without touching the others on its service.

In order, after every check has passed: delete its alert policies and notification channels
(when its spec has an `alerts:` block), its Scheduler job (so nothing calls the route
any more), remove its route, index() entry and module from the service folder (libcst, the
rest byte for byte), then redeploy the service when other jobs remain, or delete the service
(its IAM bindings go with it) when none remain and `service=True`. Secrets stay unless
`secrets=True`, and then only those no remaining automation mounts. A second run finds
nothing to destroy and makes no mutating call. The parameters file itself is never deleted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from opslib.cloud.errors import call, google_errors
from opslib.cloud.session import Session
from opslib.core.plan import Change, Plan
from opslib.fleet import load as fleet
from opslib.fleet.load import invokers, service_spec
from opslib.spec import names
from opslib.spec.loader import load_spec
from opslib.spec.model import Spec
from opslib.spec.project import params_files
from opslib.steps import alerts as alerting
from opslib.steps import schedule as scheduler
from opslib.steps.deploy import service as cloud_run
from opslib.steps.deploy.desired import live_routes
from opslib.steps.endpoint import remove as endpoint_remove
from opslib.steps.endpoint.folder import job_routes

STEP = "destroy"


@dataclass
class Teardown:
    """What destroy will do, planned before any change."""

    plan: Plan
    removal: endpoint_remove.Removal
    others: list  # the specs that stay on the service (their env, secrets, invokers)
    remaining: list[str]  # job routes left in the folder
    live: object | None  # the Cloud Run service, if it exists

    @property
    def pending(self) -> bool:
        return bool(self.plan.pending)


def plan(session: Session, *, service: bool = False, secrets: bool = False) -> Teardown:
    """Reads only: the Scheduler job, the folder, the live service and what remains on it."""
    spec, clients = session.spec, session.clients
    result = Plan(list(scheduler.delete(spec, clients, dry_run=True).changes))
    if spec.alerts is not None:  # its channels and alert policies (found by their labels)
        gone = alerting.delete(spec, clients, dry_run=True).changes
        result.changes.extend(c for c in gone if c.action != "no change")
    removal = endpoint_remove.plan_removal(spec.job, session.service_dir)
    result.changes.extend(removal.plan.changes)
    members = fleet.Fleet([session]).service_members(spec.service_key)
    others = [s.spec for s in members if s is not session]
    remaining = [j.name for j in job_routes(session.service_dir) if j.name != spec.job.name]
    live = _live(session)
    result.add(_service_change(session, remaining, live, service))
    if secrets:  # kept: what any other automation in the folder mounts (a Cloud Run job too)
        mounting = [
            load_spec(p) for p in params_files(session.params.parent) if p != session.params
        ]
        kept = {ref.rpartition(":")[0] for s in mounting for ref in s.secrets.values()}
        for ref in sorted(set(spec.secrets.values())):
            result.add(_secret_change(session, ref.rpartition(":")[0], kept))
    return Teardown(result, removal, others, remaining, live)


def _live(session: Session) -> object | None:
    spec = session.spec
    get = session.clients.run.get_service
    return call(get, _where(spec), "run", missing_ok=True, name=names.service(spec))


def _where(spec: Spec) -> str:
    return f"destroy {spec.job.name}"


def _service_change(
    session: Session, remaining: list[str], live: object | None, delete: bool
) -> Change:
    spec = session.spec
    resource = f"service {spec.service}"
    if live is None:
        return Change(STEP, resource, "no change", detail="absent")
    if remaining:
        route = spec.job.route
        routes = live_routes(live)  # type: ignore[arg-type]
        action = "update" if routes is None or route in routes else "no change"
        detail = f"redeployed without {route}; {len(remaining)} job(s) remain: " + ", ".join(
            remaining
        )
        return Change(STEP, resource, action, detail=detail)  # type: ignore[arg-type]
    if not delete:
        return Change(STEP, resource, "no change", detail="no job remains; --service deletes it")
    command = shlex.join(
        ["gcloud", "run", "services", "delete", spec.service, f"--region={spec.region}", "--quiet"]
    )
    return Change(STEP, resource, "delete", detail="no job remains", gcloud=command)


def _secret_change(session: Session, secret: str, kept: set[str]) -> Change:
    resource = f"secret {secret}"
    if secret in kept:
        return Change(STEP, resource, "no change", detail="another automation mounts it")
    spec, get = session.spec, session.clients.secrets.get_secret
    name = names.secret(spec.project, secret)
    if call(get, _where(spec), "secretmanager", missing_ok=True, name=name) is None:
        return Change(STEP, resource, "no change", detail="absent")
    command = shlex.join(["gcloud", "secrets", "delete", secret, "--quiet"])
    return Change(STEP, resource, "delete", gcloud=command)


def destroy(
    session: Session,
    *,
    service: bool = False,
    secrets: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> Plan:
    """Plan, then carry out the teardown in the order that never leaves a job calling a 404."""
    teardown = plan(session, service=service, secrets=secrets)
    if dry_run or not teardown.pending:
        return teardown.plan
    spec, clients = session.spec, session.clients
    if spec.alerts is not None:  # first: no alert about the teardown itself
        alerting.delete(spec, clients)
    scheduler.delete(spec, clients)
    endpoint_remove.remove_job(spec.job, session.service_dir)
    change = next(c for c in teardown.plan.changes if c.resource == f"service {spec.service}")
    if change.action == "update":
        specs = teardown.others or [spec]  # the other jobs' files live elsewhere: this setting
        cloud_run.deploy(
            service_spec(specs),
            session.service_dir,
            clients,
            progress=progress,
            invokers=invokers(specs),
        )
    elif change.action == "delete":
        with google_errors(_where(spec), "run"):
            clients.run.delete_service(name=names.service(spec)).result()
    for c in teardown.plan.changes:
        if c.resource.startswith("secret ") and c.action == "delete":
            name = names.secret(spec.project, c.resource.split(" ", 1)[1])
            call(clients.secrets.delete_secret, _where(spec), "secretmanager", name=name)
    return teardown.plan
