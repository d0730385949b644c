"""Step 3 — build and deploy: source -> Cloud Build -> image -> Cloud Run revision -> traffic.

Plan, then apply. The plan reads only: the live service, its IAM policy and the Scheduler jobs
calling it (the route preflight), and diffs the service the spec asks for against it
(`desired.service_diff`, also what `opslib status` shows as drift). The image tag is the hash
of the packed source (`source`), so an unchanged service folder and spec plan "no change" and
make no mutating call. The service stays private: only the invoker accounts get
roles/run.invoker, on this service only. A revision that fails to start leaves traffic where
it was, and the step fails with the revision's reason and its last log lines.
"""

from __future__ import annotations

import contextlib
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from google.api_core import exceptions
from google.cloud import run_v2

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call, google_errors
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Diff, Plan
from opslib.core.progress import phases, wait
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.spec.pricing import min_instance_cost
from opslib.steps.deploy import live, preflight
from opslib.steps.deploy.build import build
from opslib.steps.deploy.desired import (
    INVOKER,
    PUBLIC,
    REPAIR_ANNOTATION,
    ROUTES_ANNOTATION,
    invoker_diff,
    service_diff,
)
from opslib.steps.deploy.live import unready
from opslib.steps.deploy.source import Source, image_for, pack

__all__ = ["INVOKER", "DeployPlan", "Source", "build", "deploy", "image_for", "pack", "plan"]


@dataclass
class DeployPlan:
    plan: Plan
    source: Source
    image: str
    live: run_v2.Service | None
    desired: dict[str, Any]
    grant: list[str]  # invoker accounts to add (or public members to remove) on apply
    public_members: list[str] = field(default_factory=list)
    checked: preflight.Preflight | None = None
    new_bucket: str | None = None  # the lease bucket to create on apply


def desired_template(spec: Spec, image: str, routes: list[str] | None = None) -> dict[str, Any]:
    """The RevisionTemplate the spec asks for; it records the routes its source serves."""
    d = spec.deploy
    return {
        "annotations": {ROUTES_ANNOTATION: ",".join(routes or [])},
        "containers": [container(spec, image)],
        "timeout": {"seconds": int(d.timeout)},
        "scaling": {"min_instance_count": d.min_instances, "max_instance_count": d.max_instances},
        "max_instance_request_concurrency": d.effective_concurrency,
    }


def container(spec: Spec, image: str) -> dict[str, Any]:
    """The container a service revision (or a Cloud Run job's task) runs: image, env, limits."""
    d = spec.deploy
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(d.env.items())]
    for name, ref in sorted(spec.secrets.items()):
        secret, _, version = ref.rpartition(":")
        env.append(
            {
                "name": name,
                "value_source": {"secret_key_ref": {"secret": secret, "version": version}},
            }
        )
    return {
        "image": image,
        "env": env,
        "resources": {"limits": {"cpu": str(d.cpu), "memory": d.memory_text}, "cpu_idle": True},
    }


def env_flags(spec: Spec) -> list[str]:
    """gcloud's --set-env-vars / --set-secrets for the spec (shared by services and jobs)."""
    flags = []
    if spec.deploy.env:
        pairs = sorted(spec.deploy.env.items())
        flags.append("--set-env-vars=" + ",".join(f"{k}={v}" for k, v in pairs))
    if spec.secrets:
        pairs = sorted(spec.secrets.items())
        flags.append("--set-secrets=" + ",".join(f"{k}={v}" for k, v in pairs))
    return flags


def gcloud_deploy(spec: Spec, image: str) -> str:
    """The same deploy with today's gcloud (v1 API; the seed's gcr.io is shut down)."""
    d = spec.deploy
    args = [
        *("gcloud", "run", "deploy", spec.service, f"--image={image}"),
        *(f"--project={spec.project}", f"--region={spec.region}"),
        *(f"--memory={d.memory_text}", f"--cpu={d.cpu}", f"--timeout={int(d.timeout)}"),
        *(f"--min-instances={d.min_instances}", f"--max-instances={d.max_instances}"),
        "--no-allow-unauthenticated",
        "--quiet",
        *env_flags(spec),
    ]
    return shlex.join(args)


def _where(spec: Spec) -> str:
    return f"deploy of {spec.service}"


def plan(
    spec: Spec,
    service_dir: Path,
    clients: Clients,
    invokers: list[str] | None = None,
    prune: preflight.Prune = "",
    source: Source | None = None,
) -> DeployPlan:
    """What step 3 would change, routes and the jobs calling them included; reads only."""
    if not (service_dir / "Dockerfile").is_file():
        raise BadInput(
            str(service_dir), "has no Dockerfile", "pass the service folder (step 1-2 output)"
        )
    _check_secrets(spec, clients)
    source = source or pack(service_dir)
    image = image_for(spec, source)
    where = _where(spec)
    live = call(clients.run.get_service, where, "run", missing_ok=True, name=names.service(spec))
    policy = _policy(spec, clients, live)
    accounts = [f"serviceAccount:{a}" for a in (invokers or [spec.invoker_account])]
    checked = preflight.check(spec, service_dir, clients, live)
    d = service_diff(spec, image, checked.new_routes, live)
    broken = unready(live)
    result = Plan()
    result.add(_build_change(spec, service_dir, image, live))
    result.add(_service_change(spec, image, d, broken))
    have = _invoking(invoker_diff(accounts, policy), accounts)
    public = sorted(have & PUBLIC)
    missing = [a for a in accounts if a not in have]
    for account in accounts:
        result.add(_invoker_change(spec, account, account in missing, public))
    new_bucket = _lease_bucket(spec, clients, result)
    for change in checked.changes(spec, prune):
        result.add(change)
    template = desired_template(spec, image, checked.new_routes)
    if broken and d.action == "no change":  # the same template makes no new revision
        template["annotations"][REPAIR_ANNOTATION] = str(uuid.uuid4())
    grant = missing or (accounts if public else [])
    return DeployPlan(result, source, image, live, template, grant, public, checked, new_bucket)


def _invoking(d: Diff, accounts: list[str]) -> set[str]:
    """The managed invoker members live now (none without a service)."""
    if not d.exists:
        return set()
    return set(d.changes[0].live) if d.changes else set(accounts)  # type: ignore[arg-type]


def _policy(spec: Spec, clients: Clients, live: run_v2.Service | None) -> Any | None:
    if live is None:
        return None
    request = {"resource": live.name}
    return call(clients.run.get_iam_policy, _where(spec), "run", request=request)


def _build_change(spec: Spec, service_dir: Path, image: str, live: Any | None) -> Change:
    """The image to build: none when the live service already runs this tag (same source)."""
    running = live is not None and live.template.containers and live.template.containers[0].image
    gcloud = ["gcloud", "builds", "submit", f"--tag={image}", f"--project={spec.project}"]
    return Change(
        "build",
        image,
        "no change" if running == image else "create",
        gcloud=shlex.join([*gcloud, str(service_dir)]),
    )


def _service_change(spec: Spec, image: str, d: Any, broken: str = "") -> Change:
    """The service's revision: created, updated in the fields that differ, or left alone; a
    service that is not ready is deployed again, which repairs it."""
    detail = "; ".join(filter(None, [d.detail(), f"{broken}; deploys it again" if broken else ""]))
    action = "update" if broken and d.action == "no change" else d.action
    cost = _min_instance_cost(spec)
    if cost and action != "no change":
        detail = f"{detail}; {cost}" if detail else cost
    gcloud = gcloud_deploy(spec, image)
    return Change("deploy", f"service {spec.service}", action, d.fields, detail, gcloud)


def _min_instance_cost(spec: Spec) -> str:
    """What keeping min instances warm costs a month (one pricing function for every page)."""
    d = spec.deploy
    if not d.min_instances:
        return ""
    cost = min_instance_cost(d.cpu, d.memory, spec.region, d.min_instances)
    return f"min_instances {d.min_instances}: about ${cost.monthly:,.2f}/month idle"


def _lease_bucket(spec: Spec, clients: Clients, result: Plan) -> str | None:
    """The overlap guard's bucket, planned when the service's jobs take leases."""
    bucket = spec.deploy.env.get("OPSLIB_LEASE_BUCKET")
    if not bucket:
        return None
    with google_errors(f"lease bucket gs://{bucket}", "storage"):
        exists = clients.storage.bucket(bucket).exists()
    result.add(
        Change(
            "deploy",
            f"lease bucket gs://{bucket}",
            "no change" if exists else "create",
            detail="overlap guard (job.overlap skip/queue): one lease object per job; the "
            "service's runtime account needs roles/storage.objectUser on it",
            gcloud=shlex.join(
                [
                    *("gcloud", "storage", "buckets", "create", f"gs://{bucket}"),
                    *(f"--project={spec.project}", f"--location={spec.region}"),
                    "--uniform-bucket-level-access",
                ]
            ),
        )
    )
    return None if exists else bucket


def _invoker_change(spec: Spec, member: str, missing: bool, public: list[str]) -> Change:
    return Change(
        "deploy",
        f"invoker {member.split(':', 1)[1]}",
        "create" if missing else "no change",
        detail="roles/run.invoker on this service only" + (f"; removes {public}" if public else ""),
        gcloud=shlex.join(
            [
                *("gcloud", "run", "services", "add-iam-policy-binding", spec.service),
                *(f"--region={spec.region}", f"--member={member}", f"--role={INVOKER}"),
            ]
        ),
    )


def _check_secrets(spec: Spec, clients: Clients) -> None:
    """Every secret the service mounts exists and is readable, before anything changes."""
    if not spec.secrets:
        return
    from opslib.steps.secrets import check_refs

    refs = check_refs(clients, spec)
    bad = refs[~refs["ok"]]
    if len(bad):
        raise BadInput(
            "secrets",
            f"not ready to mount:\n{bad.to_string(index=False)}",
            "create them: opslib secrets add PARAMS NAME < value-file (or import a .env)",
        )


def deploy(
    spec: Spec,
    service_dir: Path,
    clients: Clients,
    dry_run: bool = False,
    progress: bool = True,
    invokers: list[str] | None = None,
    prune: preflight.Prune = "",
) -> tuple[Plan, pd.DataFrame]:
    """Plan, then build, deploy, route traffic and grant the invoker; returns (plan, status).

    Refuses (BadInput, no mutating call) when an enabled Scheduler job calls a route the
    source lacks, unless `prune` pauses or deletes those jobs.
    """
    dp = checked_plan(spec, Path(service_dir), clients, invokers, prune, dry_run)
    if dry_run:
        return dp.plan, pd.DataFrame()
    return dp.plan, apply(spec, clients, dp, progress, prune)


def checked_plan(
    spec: Spec,
    service_dir: Path,
    clients: Clients,
    invokers: list[str] | None = None,
    prune: preflight.Prune = "",
    dry_run: bool = False,
    source: Source | None = None,
    rerun: str = "",
) -> DeployPlan:
    """The plan, refused (BadInput) when it would drop a live job's route and may not prune;
    `rerun` is the command that writes every job of the service back (the refusal's fix)."""
    if prune not in preflight.PRUNE_MODES:
        raise BadInput("--prune", f"{prune!r} is not pause or delete", "use --prune[=delete]")
    dp = plan(spec, Path(service_dir), clients, invokers, prune, source)
    if not prune and not dry_run:
        assert dp.checked is not None
        dp.checked.refuse(spec, Path(service_dir), dp.plan, rerun)
    return dp


def apply(
    spec: Spec, clients: Clients, dp: DeployPlan, progress: bool, prune: preflight.Prune
) -> pd.DataFrame:
    """Carry out a checked plan: build, prune callers of dropped routes, roll out, grant;
    one progress bar through the phases that apply."""
    building = dp.plan.changes[0].action != "no change"
    rolling = any(
        c.resource.startswith("service ") and c.action != "no change" for c in dp.plan.changes
    )
    steps = [
        ("build", building, lambda: build(spec, clients, dp.source, dp.image, progress)),
        ("lease bucket", bool(dp.new_bucket), lambda: _bucket(spec, clients, dp.new_bucket)),
        ("preflight", dp.checked is not None, lambda: _prune(spec, clients, dp, prune)),
        ("roll out", rolling, lambda: _roll_out(spec, clients, dp, progress)),
        ("invoker", bool(dp.grant), lambda: _grant(spec, clients, dp.grant)),
    ]
    todo = [(name, action) for name, wanted, action in steps if wanted]
    with phases(f"deploy {spec.service}", [n for n, _ in todo] + ["status"], progress) as bar:
        for name, action in todo:
            bar.run(name, action)
        return bar.run("status", live.status, spec, clients)


def _bucket(spec: Spec, clients: Clients, bucket: str | None) -> None:
    where = f"lease bucket gs://{bucket}"
    # Made meanwhile (Conflict): it exists, which is what was asked.
    with google_errors(where, "storage"), contextlib.suppress(exceptions.Conflict):
        clients.storage.create_bucket(bucket, location=spec.region)


def _prune(spec: Spec, clients: Clients, dp: DeployPlan, prune: preflight.Prune) -> None:
    assert dp.checked is not None
    preflight.prune(spec, clients, dp.checked, prune)


def _roll_out(spec: Spec, clients: Clients, dp: DeployPlan, progress: bool) -> None:
    template = dp.desired
    try:
        if dp.live is None:
            operation = clients.run.create_service(
                parent=names.location(spec),
                service_id=spec.service,
                service={"template": template, "ingress": "INGRESS_TRAFFIC_ALL"},
            )
        else:
            service = clients.run.get_service(name=names.service(spec))
            service.template = template
            service.traffic = [{"type_": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
            operation = clients.run.update_service(service=service)
        wait(operation, f"deploy {spec.service}", progress)
    except exceptions.GoogleAPICallError as exc:
        raise OpslibError(
            _where(spec),
            _failure(spec, clients, exc),
            "fix the service (see the log lines), then run step 3 again; traffic "
            "stays on the previous revision",
        ) from None


def _failure(spec: Spec, clients: Clients, exc: exceptions.GoogleAPICallError) -> str:
    """The revision's reason plus its last log lines."""
    message = exc.message or str(exc)
    service = clients.run.get_service(name=names.service(spec))
    revision = names.short(service.latest_created_revision)
    entries = clients.logging.list_entries(
        filter_=f'resource.type="cloud_run_revision" AND resource.labels.revision_name='
        f'"{revision}" AND NOT log_id("run.googleapis.com/requests")',
        order_by="timestamp desc",
        page_size=10,
        max_results=10,
    )
    lines = [
        str(e.payload.get("message", e.payload) if isinstance(e.payload, dict) else e.payload)
        for e in entries
    ][::-1]
    return f"revision {revision} failed: {message}\n  last log lines:\n" + "\n".join(
        f"    {line}" for line in lines
    )


def _grant(spec: Spec, clients: Clients, accounts: list[str]) -> None:
    """roles/run.invoker for the scheduler's accounts only; never allUsers."""
    name = names.service(spec)
    with google_errors(f"invoker grant on {spec.service}", "run"):
        policy = clients.run.get_iam_policy(request={"resource": name})
        for binding in policy.bindings:
            if binding.role == INVOKER:
                kept = [m for m in binding.members if m not in PUBLIC]
                del binding.members[:]
                binding.members.extend(kept)
        for invoker in accounts:
            if not any(b.role == INVOKER and invoker in b.members for b in policy.bindings):
                policy.bindings.add(role=INVOKER, members=[invoker])
        clients.run.set_iam_policy(request={"resource": name, "policy": policy})
