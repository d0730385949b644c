"""Deploy preflight: never ship a source that drops a route a live Scheduler job still calls.

Before any mutating call, step 3 lists the Scheduler jobs on the target whose URL points at
the service (Google's state, not local files: a teammate's job counts too) and compares the
paths they call with the routes of the source about to ship. An enabled job calling a route
the new source lacks stops the deploy; `prune` pauses (or deletes) such jobs instead, and the
plan says so. Each revision records the routes it serves in an annotation, so the plan shows
routes added, kept and removed, and the doctor can tell which revision last had a route.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call
from opslib.core.errors import BadInput
from opslib.core.plan import Change, Plan
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps.deploy.desired import live_routes
from opslib.steps.deploy.source import source_routes

Prune = Literal["", "pause", "delete"]
PRUNE_MODES = ("", "pause", "delete")


@dataclass(frozen=True)
class Caller:
    """A Scheduler job that calls this service, and the path it calls."""

    name: str  # the job's full resource name
    path: str
    state: str  # ENABLED, PAUSED, DISABLED, ...

    @property
    def job_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class Preflight:
    """Routes of the new source against the live revision and the jobs calling the service."""

    new_routes: list[str]
    live_routes: list[str] | None  # None: no service yet, or deployed without the annotation
    callers: list[Caller] = field(default_factory=list)

    @property
    def missing(self) -> list[Caller]:
        """Enabled jobs that would call a route the new source does not serve."""
        return [c for c in self.callers if c.state == "ENABLED" and c.path not in self.new_routes]

    def changes(self, spec: Spec, prune: Prune) -> list[Change]:
        """Plan rows: each route (added, kept, removed) and what happens to broken callers."""
        rows = [self._route_row(path) for path in self._all_routes()]
        for caller in self.missing:
            rows.append(_prune_row(spec, caller, prune))
        return rows

    def _all_routes(self) -> list[str]:
        called = {c.path for c in self.callers}
        return sorted(set(self.new_routes) | set(self.live_routes or []) | called)

    def _route_row(self, path: str) -> Change:
        callers = [c for c in self.callers if c.path == path]
        called = ", ".join(f"{c.job_id} ({c.state.lower()})" for c in callers)
        detail = f"called by {called}" if called else "no scheduler job calls it"
        live = self.live_routes
        if path not in self.new_routes:
            return Change("routes", f"route {path}", "delete", detail=f"{detail}; not in source")
        if live is None:  # the live revision did not record its routes (not deployed by opslib)
            return Change("routes", f"route {path}", "no change", detail=f"{detail}; live unknown")
        action = "create" if path not in live else "no change"
        return Change("routes", f"route {path}", action, detail=detail)  # type: ignore[arg-type]

    def refuse(self, spec: Spec, service_dir: Path, plan: Plan, rerun: str = "") -> None:
        """Stop before any mutating call when an enabled job would lose its route."""
        broken = self.missing
        if not broken:
            return
        lines = "\n".join(
            f"  scheduler job {c.job_id} ({c.state.lower()}) calls {c.path}, which "
            f"{service_dir} does not serve"
            for c in broken
        )
        error = BadInput(
            f"deploy of {spec.service}",
            f"refused before any change: the new source would drop a route a live job "
            f"calls:\n{lines}",
            f"add the jobs back to {service_dir}"
            + (f": {rerun} (steps 1-3 of every job of the service, one deploy)" if rerun else "")
            + ", or deploy with --prune to pause those jobs (--prune=delete deletes them)",
        )
        error.plan = plan  # type: ignore[attr-defined]  # the CLI prints the plan first
        raise error


def _prune_row(spec: Spec, caller: Caller, prune: Prune) -> Change:
    if prune == "delete":
        verb, action = "delete", "delete"
    elif prune == "pause":
        verb, action = "pause", "update"
    else:
        verb, action = "", "no change"
    gcloud = ""
    if verb:
        gcloud = shlex.join(
            ["gcloud", "scheduler", "jobs", verb, caller.job_id, f"--location={spec.region}"]
        )
    outcome = {"pause": "paused (--prune)", "delete": "deleted (--prune=delete)"}
    detail = f"calls {caller.path}, which the new source lacks: " + outcome.get(
        verb, "BLOCKS the deploy"
    )
    return Change(
        "preflight",
        f"scheduler job {caller.job_id}",
        action,
        detail=detail,
        gcloud=gcloud,  # type: ignore[arg-type]
    )


def callers(spec: Spec, clients: Clients, live: Any | None) -> list[Caller]:
    """Scheduler jobs in the service's region whose HTTP target is this service's URL."""
    if live is None:
        return []
    bases = {u.rstrip("/") for u in [live.uri, *getattr(live, "urls", [])] if u}
    where = f"deploy of {spec.service}: the Scheduler jobs calling it"
    listed = call(
        clients.scheduler.list_jobs,
        where,
        "scheduler",
        missing_ok=True,
        parent=names.location(spec),
    )
    jobs = list(listed) if listed is not None else []
    found = []
    for job in jobs:
        uri = job.http_target.uri if job.http_target else ""
        parts = urlsplit(uri)
        if uri and f"{parts.scheme}://{parts.netloc}" in bases:
            found.append(Caller(job.name, parts.path or "/", job.state.name))
    return sorted(found, key=lambda c: (c.path, c.name))


def check(spec: Spec, service_dir: Path, clients: Clients, live: Any | None) -> Preflight:
    """Reads only: the new source's routes, the live ones and the jobs that call the service."""
    return Preflight(source_routes(service_dir), live_routes(live), callers(spec, clients, live))


def prune(spec: Spec, clients: Clients, preflight: Preflight, mode: Prune) -> None:
    """Pause or delete the enabled jobs whose route the new source drops (after the build)."""
    if not mode:
        return
    where = f"deploy of {spec.service}: --prune={mode}"
    for caller in preflight.missing:
        if mode == "delete":
            call(
                clients.scheduler.delete_job, where, "scheduler", missing_ok=True, name=caller.name
            )
        else:
            call(clients.scheduler.pause_job, where, "scheduler", name=caller.name)
