"""Step 3 — build and deploy: source -> Cloud Build -> image -> Cloud Run revision -> traffic.

The image tag is the hash of the packed source, so an unchanged service folder and spec plan
"no change" and make no mutating call. The service stays private: only the spec's invoker
account gets roles/run.invoker, on this service only. A revision that fails to start leaves
traffic where it was, and the step fails with the revision's reason and its last log lines.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import shlex
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pathspec
from google.api_core import exceptions

from opslib.cloud.clients import Clients, clients_for
from opslib.core.errors import BadInput, OpslibError
from opslib.core.plan import Change, Plan, compare
from opslib.core.progress import wait
from opslib.spec.model import Spec
from opslib.spec.rules import format_duration
from opslib.steps.deploy import preflight

INVOKER = "roles/run.invoker"


@dataclass
class Source:
    """The packed service folder: a deterministic tarball and the tag it yields."""

    data: bytes
    tag: str


@dataclass
class DeployPlan:
    plan: Plan
    source: Source
    image: str
    live: Any | None
    desired: dict[str, Any]
    grant: list[str]  # invoker accounts to add (or public members to remove) on apply
    public_members: list[str] = field(default_factory=list)
    checked: preflight.Preflight | None = None
    new_bucket: str | None = None  # the lease bucket to create on apply


def pack(service_dir: Path) -> Source:
    """tar.gz of the folder minus .gcloudignore, byte-identical for identical content."""
    ignore_file = service_dir / ".gcloudignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.exists() else []
    spec = pathspec.GitIgnoreSpec.from_lines([*lines, ".git/", "__pycache__/"])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in service_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(service_dir).as_posix()
            if spec.match_file(relative):
                continue
            info = tarfile.TarInfo(relative)
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            archive.addfile(info, io.BytesIO(path.read_bytes()))
    raw = buffer.getvalue()
    data = gzip.compress(raw, mtime=0)
    return Source(data, hashlib.sha256(raw).hexdigest()[:16])


def image_for(spec: Spec, source: Source) -> str:
    """Artifact Registry form (Container Registry, gcr.io, is shut down)."""
    return f"{spec.region}-docker.pkg.dev/{spec.project}/opslib/{spec.service}:{source.tag}"


def service_name(spec: Spec) -> str:
    return f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"


def desired_template(spec: Spec, image: str, routes: list[str] | None = None) -> dict[str, Any]:
    """The RevisionTemplate the spec asks for; it records the routes its source serves."""
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
        "annotations": {preflight.ROUTES_ANNOTATION: ",".join(routes or [])},
        "containers": [
            {
                "image": image,
                "env": env,
                "resources": {
                    "limits": {"cpu": str(d.cpu), "memory": d.memory_text},
                    "cpu_idle": True,
                },
            }
        ],
        "timeout": {"seconds": int(d.timeout)},
        "scaling": {"min_instance_count": d.min_instances, "max_instance_count": d.max_instances},
        "max_instance_request_concurrency": d.effective_concurrency,
    }


def container_fields(container: Any) -> dict[str, Any]:
    """A live container's image, resources and env (secrets as secret:NAME:VERSION)."""
    env = {}
    for var in container.env:
        ref = var.value_source.secret_key_ref
        env[var.name] = f"secret:{ref.secret}:{ref.version}" if ref.secret else var.value
    return {
        "image": container.image,
        "cpu": str(container.resources.limits.get("cpu", "")),
        "memory": str(container.resources.limits.get("memory", "")),
        "env": env,
    }


def _live_fields(service: Any) -> dict[str, Any]:
    template = service.template
    return {
        **container_fields(template.containers[0]),
        "timeout": int(template.timeout.total_seconds()),
        "min_instances": template.scaling.min_instance_count,
        "max_instances": template.scaling.max_instance_count,
        "concurrency": template.max_instance_request_concurrency,
    }


def desired_env(spec: Spec) -> dict[str, str]:
    """The env the spec asks for, secrets as secret:NAME:VERSION (as container_fields reads)."""
    env = dict(spec.deploy.env)
    env.update({k: "secret:" + ":".join(v.rsplit(":", 1)) for k, v in spec.secrets.items()})
    return env


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


def _desired_fields(spec: Spec, image: str) -> dict[str, Any]:
    d = spec.deploy
    env = desired_env(spec)
    return {
        "image": image,
        "cpu": str(d.cpu),
        "memory": d.memory_text,
        "timeout": int(d.timeout),
        "min_instances": d.min_instances,
        "max_instances": d.max_instances,
        "concurrency": d.effective_concurrency,
        "env": env,
    }


def gcloud_deploy(spec: Spec, image: str) -> str:
    """The same deploy with today's gcloud (v1 API; the seed's gcr.io is shut down)."""
    d = spec.deploy
    args = [
        "gcloud",
        "run",
        "deploy",
        spec.service,
        f"--image={image}",
        f"--project={spec.project}",
        f"--region={spec.region}",
        f"--memory={d.memory_text}",
        f"--cpu={d.cpu}",
        f"--timeout={int(d.timeout)}",
        f"--min-instances={d.min_instances}",
        f"--max-instances={d.max_instances}",
        "--no-allow-unauthenticated",
        "--quiet",
        *env_flags(spec),
    ]
    return shlex.join(args)


def plan(
    spec: Spec,
    service_dir: Path,
    clients: Clients | None = None,
    invokers: list[str] | None = None,
    prune: preflight.Prune = "",
    source: Source | None = None,
) -> DeployPlan:
    """What step 3 would change, routes and the jobs calling them included; reads only."""
    clients = clients or clients_for(spec)
    if not (service_dir / "Dockerfile").is_file():
        raise BadInput(
            str(service_dir), "has no Dockerfile", "pass the service folder (step 1-2 output)"
        )
    _check_secrets(spec, clients)
    source = source or pack(service_dir)
    image = image_for(spec, source)
    try:
        live = clients.run.get_service(name=service_name(spec))
    except exceptions.NotFound:
        live = None
    result = Plan()
    result.add(_build_change(spec, service_dir, image, live))
    result.add(_service_change(spec, image, live))
    members, public = _members(clients, live)
    accounts = [f"serviceAccount:{a}" for a in (invokers or [spec.invoker_account])]
    missing = [a for a in accounts if a not in members]
    for account in accounts:
        result.add(_invoker_change(spec, account, account in missing, public))
    bucket = spec.deploy.env.get("OPSLIB_LEASE_BUCKET")
    new_bucket = None
    if bucket:
        result.add(_bucket_change(spec, clients, bucket))
        new_bucket = bucket if result.changes[-1].action == "create" else None
    checked = preflight.check(spec, service_dir, clients, live)
    for change in checked.changes(spec, prune):
        result.add(change)
    template = desired_template(spec, image, checked.new_routes)
    grant = missing or (accounts if public else [])
    return DeployPlan(result, source, image, live, template, grant, public, checked, new_bucket)


def _build_change(spec: Spec, service_dir: Path, image: str, live: Any | None) -> Change:
    """The image to build: none when the live service already runs this tag (same source)."""
    return Change(
        "build",
        image,
        "no change" if live and _live_fields(live)["image"] == image else "create",
        gcloud=shlex.join(
            [
                "gcloud",
                "builds",
                "submit",
                f"--tag={image}",
                f"--project={spec.project}",
                str(service_dir),
            ]
        ),
    )


def _service_change(spec: Spec, image: str, live: Any | None) -> Change:
    """The service's revision: created, updated in the fields that differ, or left alone."""
    current = _live_fields(live) if live is not None else None
    action, differ = compare(_desired_fields(spec, image), current)
    return Change(
        "deploy", f"service {spec.service}", action, differ, gcloud=gcloud_deploy(spec, image)
    )


def _bucket_change(spec: Spec, clients: Clients, bucket: str) -> Change:
    """The overlap guard's bucket: one lease object per job, created once per project."""
    exists = clients.storage.bucket(bucket).exists()
    return Change(
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


def _invoker_change(spec: Spec, member: str, missing: bool, public: list[str]) -> Change:
    return Change(
        "deploy",
        f"invoker {member.split(':', 1)[1]}",
        "create" if missing else "no change",
        detail="roles/run.invoker on this service only" + (f"; removes {public}" if public else ""),
        gcloud=shlex.join(
            [
                "gcloud",
                "run",
                "services",
                "add-iam-policy-binding",
                spec.service,
                f"--region={spec.region}",
                f"--member={member}",
                f"--role={INVOKER}",
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


def _members(clients: Clients, live: Any | None) -> tuple[set[str], list[str]]:
    if live is None:
        return set(), []
    policy = clients.run.get_iam_policy(request={"resource": live.name})
    members = {m for b in policy.bindings if b.role == INVOKER for m in b.members}
    return members, sorted(members & {"allUsers", "allAuthenticatedUsers"})


def deploy(
    spec: Spec,
    service_dir: Path,
    clients: Clients | None = None,
    dry_run: bool = False,
    progress: bool = True,
    invokers: list[str] | None = None,
    prune: preflight.Prune = "",
) -> tuple[Plan, pd.DataFrame]:
    """Plan, then build, deploy, route traffic and grant the invoker; returns (plan, status).

    Refuses (BadInput, no mutating call) when an enabled Scheduler job calls a route the
    source lacks, unless `prune` pauses or deletes those jobs.
    """
    clients = clients or clients_for(spec)
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
) -> DeployPlan:
    """The plan, refused (BadInput) when it would drop a live job's route and may not prune."""
    if prune not in preflight.PRUNE_MODES:
        raise BadInput("--prune", f"{prune!r} is not pause or delete", "use --prune[=delete]")
    dp = plan(spec, Path(service_dir), clients, invokers, prune, source)
    if not prune and not dry_run:
        assert dp.checked is not None
        dp.checked.refuse(spec, Path(service_dir), dp.plan)
    return dp


def apply(
    spec: Spec, clients: Clients, dp: DeployPlan, progress: bool, prune: preflight.Prune
) -> pd.DataFrame:
    """Carry out a checked plan: build, prune callers of dropped routes, roll out, grant."""
    if dp.plan.changes[0].action != "no change":
        build(spec, clients, dp.source, dp.image, progress)
    if dp.new_bucket:
        with contextlib.suppress(exceptions.Conflict):  # made meanwhile: it exists
            clients.storage.create_bucket(dp.new_bucket, location=spec.region)
    if dp.checked is not None:
        preflight.prune(spec, clients, dp.checked, prune)
    if any(c.resource.startswith("service ") and c.action != "no change" for c in dp.plan.changes):
        _roll_out(spec, clients, dp, progress)
    if dp.grant:
        _grant(spec, clients, dp.grant)
    return status(spec, clients)


def build(spec: Spec, clients: Clients, source: Source, image: str, progress: bool) -> None:
    """Upload the packed folder and build `image` with Cloud Build (what step 3 ships)."""
    bucket_name = f"{spec.project.replace(':', '_').replace('.', '_')}_cloudbuild"
    bucket = clients.storage.bucket(bucket_name)
    if not bucket.exists():
        # Another deploy of this project may create it between the two calls: it exists then.
        with contextlib.suppress(exceptions.Conflict):
            clients.storage.create_bucket(bucket_name)
    obj = f"source/{time.time():.6f}-{uuid.uuid4().hex}.tgz"
    bucket.blob(obj).upload_from_string(source.data, content_type="application/gzip")
    operation = clients.build.create_build(
        project_id=spec.project,
        build={
            "source": {"storage_source": {"bucket": bucket_name, "object_": obj}},
            "steps": [
                {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", image, "."]}
            ],
            "images": [image],
        },
    )
    with api_errors(
        f"build of {image}", "read the build log above; fix the Dockerfile or requirements.txt"
    ):
        wait(operation, f"build {spec.service}", progress)


@contextlib.contextmanager
def api_errors(where: str, fix: str) -> Iterator[None]:
    """Google's API errors in the block as one OpslibError: what failed, Google's words, the fix."""
    try:
        yield
    except exceptions.GoogleAPICallError as exc:
        raise OpslibError(where, exc.message or str(exc), fix) from None


def _roll_out(spec: Spec, clients: Clients, dp: DeployPlan, progress: bool) -> None:
    template = dp.desired
    try:
        if dp.live is None:
            operation = clients.run.create_service(
                parent=f"projects/{spec.project}/locations/{spec.region}",
                service_id=spec.service,
                service={"template": template, "ingress": "INGRESS_TRAFFIC_ALL"},
            )
        else:
            service = clients.run.get_service(name=service_name(spec))
            service.template = template
            service.traffic = [{"type_": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
            operation = clients.run.update_service(service=service)
        wait(operation, f"deploy {spec.service}", progress)
    except exceptions.GoogleAPICallError as exc:
        raise OpslibError(
            f"deploy of {spec.service}",
            _failure(spec, clients, exc),
            "fix the service (see the log lines), then run step 3 again; traffic "
            "stays on the previous revision",
        ) from None


def _failure(spec: Spec, clients: Clients, exc: exceptions.GoogleAPICallError) -> str:
    """The revision's reason plus its last log lines."""
    message = exc.message or str(exc)
    service = clients.run.get_service(name=service_name(spec))
    revision = service.latest_created_revision.rsplit("/", 1)[-1]
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
    name = service_name(spec)
    policy = clients.run.get_iam_policy(request={"resource": name})
    for binding in policy.bindings:
        if binding.role == INVOKER:
            kept = [m for m in binding.members if m not in ("allUsers", "allAuthenticatedUsers")]
            del binding.members[:]
            binding.members.extend(kept)
    for invoker in accounts:
        if not any(b.role == INVOKER and invoker in b.members for b in policy.bindings):
            policy.bindings.add(role=INVOKER, members=[invoker])
    clients.run.set_iam_policy(request={"resource": name, "policy": policy})


def status(spec: Spec, clients: Clients | None = None) -> pd.DataFrame:
    """Revision, URL and traffic of the live service, as users check after a deploy."""
    clients = clients or clients_for(spec)
    service = clients.run.get_service(name=service_name(spec))
    rows = [
        {
            "revision": t.revision or service.latest_ready_revision.rsplit("/", 1)[-1],
            "percent": t.percent,
            "url": service.uri,
            "ready": service.terminal_condition.state.name == "CONDITION_SUCCEEDED",
            "timeout": format_duration(service.template.timeout.total_seconds()),
            "memory": service.template.containers[0].resources.limits.get("memory"),
        }
        for t in service.traffic_statuses
    ]
    return pd.DataFrame(rows, columns=["revision", "percent", "url", "ready", "timeout", "memory"])


def revisions_frame(spec: Spec, clients: Clients | None = None, limit: int = 3) -> pd.DataFrame:
    """The newest revisions, ready or not, with their share of traffic (like `revisions list`)."""
    clients = clients or clients_for(spec)
    service = clients.run.get_service(name=service_name(spec))
    traffic = {t.revision: t.percent for t in service.traffic_statuses}
    revisions = sorted(
        clients.revisions.list_revisions(parent=service_name(spec)),
        key=lambda r: r.create_time,
        reverse=True,
    )[:limit]
    rows = [
        {
            "revision": r.name.rsplit("/", 1)[-1],
            "created": r.create_time,
            "ready": _ready(r),
            "traffic": traffic.get(r.name.rsplit("/", 1)[-1], 0),
            "image": r.containers[0].image if r.containers else "",
        }
        for r in revisions
    ]
    return pd.DataFrame(rows, columns=["revision", "created", "ready", "traffic", "image"])


def _ready(revision: Any) -> str:
    """'yes', or the condition's message when the revision did not start."""
    for condition in revision.conditions:
        if condition.type_ == "Ready":
            return "yes" if condition.state.name == "CONDITION_SUCCEEDED" else condition.message
    return "yes" if revision.reconciling is False else "starting"
