"""The doctor's route check: does the revision serving traffic serve the path the job calls?

Several automations share one Cloud Run service and its source folder. A deploy of that folder
without one job's route (from a per-job copy, or a folder that lost the job) leaves that job's
Scheduler attempts answering 404, which Scheduler records as NOT_FOUND. Each revision opslib
deploys records the routes its source serves (the `opslib/routes` annotation, see
`preflight`), so the finding names the routes the serving revision has, the newest revision that
still had the job's route, and the one command that writes every job of the service into its
folder and deploys that folder once. A revision deployed another way has no annotation: then
only 404s in the request logs tell, and the finding says the routes are unknown.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.cloud.session import open_session
from opslib.core.errors import OpslibError
from opslib.doctor.checks import (
    STEP_SCHEDULE,
    Finding,
    ok,
    recency,
    seen_codes,
    shown,
    when,
)
from opslib.doctor.facts import Facts
from opslib.spec.loader import load_spec
from opslib.spec.model import Spec
from opslib.spec.project import params_files
from opslib.steps.deploy.desired import ROUTES_ANNOTATION

CHECK = "route"
NOT_FOUND = ("NOT_FOUND",)


@dataclass(frozen=True)
class Serving:
    """A revision that receives traffic, and the routes it recorded (None: not recorded)."""

    name: str
    percent: int
    routes: list[str] | None
    created: Any


def routes_of(revision: Any) -> list[str] | None:
    """The paths a revision's source served at its deploy; None when opslib did not deploy it."""
    text = dict(revision.annotations).get(ROUTES_ANNOTATION)
    return None if text is None else [p for p in text.split(",") if p]


def serving(facts: Facts) -> list[Serving]:
    """The revisions with a share of the service's traffic, as its traffic statuses say."""
    service, revisions = facts.service, facts.revisions or []
    by_name = {r.name.rsplit("/", 1)[-1]: r for r in revisions}
    found = []
    for target in service.traffic_statuses:
        if not target.percent:
            continue
        name = target.revision or service.latest_ready_revision.rsplit("/", 1)[-1]
        revision = by_name.get(name)
        routes = routes_of(revision) if revision is not None else None
        created = revision.create_time if revision is not None else None
        found.append(Serving(name, target.percent, routes, created))
    return found


def check_routes(facts: Facts) -> list[Finding]:
    """The job's route is among those of every serving revision; names the fix when it is not."""
    if facts.service is None:
        return [ok(CHECK, "no service yet, so no route to check")]
    if facts.revisions is None:  # unreadable: the doctor's own row says so
        return []
    live, route = serving(facts), facts.route
    if not live:
        return [ok(CHECK, f"no revision serves traffic yet, so {route} is not served")]
    lacking = [s for s in live if s.routes is not None and route not in s.routes]
    unknown = [s for s in live if s.routes is None]
    refused = seen_codes(facts, NOT_FOUND, (404,))
    if lacking:
        return [_missing(facts, lacking, refused)]
    if unknown and refused:
        return [_unknown(facts, unknown, refused)]
    if refused and recency(facts, NOT_FOUND) == "error":
        return [_served_since(facts, live, refused)]
    return [_fine(facts, live)]


def _missing(facts: Facts, lacking: list[Serving], refused: str) -> Finding:
    route, job = facts.route, facts.job
    names = ", ".join(s.name for s in lacking)
    who = (
        f"scheduler job {facts.spec.job.name} gets 404 (NOT_FOUND)"
        if job is not None
        else "the job will get 404 (NOT_FOUND) once scheduled"
    )
    evidence = [
        f"{s.name} ({s.percent}% of traffic) serves {', '.join(s.routes or []) or 'no route'}"
        for s in lacking
    ]
    evidence.append(_last_had(facts))
    if refused:
        evidence.append(refused)
    paused = job is not None and job.state.name == "PAUSED"
    return Finding(
        CHECK,
        "warning" if paused else "error",
        f"route {route} is missing on the serving revision {names}: {who}",
        "; ".join(evidence),
        _fix(facts, lacking),
    )


def _unknown(facts: Facts, unknown: list[Serving], refused: str) -> Finding:
    route, names = facts.route, ", ".join(s.name for s in unknown)
    requests = facts.job_requests
    newest_404 = len(requests) and requests.iloc[-1]["http_status"] == 404
    severity = "error" if newest_404 or recency(facts, NOT_FOUND) == "error" else "warning"
    evidence = (
        f"the routes {names} serves are unknown (no {ROUTES_ANNOTATION} annotation: not "
        f"deployed by opslib); {refused}; {_last_had(facts)}"
    )
    return Finding(
        CHECK,
        severity,
        f"route {route} answers 404 on the serving revision {names}",
        evidence,
        _fix(facts, unknown),
    )


def _served_since(facts: Facts, live: list[Serving], refused: str) -> Finding:
    """The route is served now, yet the newest attempt got 404: deployed since, or elsewhere."""
    route, ended = facts.route, pd.Timestamp(facts.attempts.iloc[-1]["end"])
    dated = [s for s in live if s.created is not None]
    newest = max(dated, key=lambda s: s.created) if dated else None
    if newest is not None and pd.Timestamp(newest.created) > ended:
        fix = (
            f"{newest.name} was deployed after that attempt: run the job now to confirm "
            "(opslib verify PARAMS)"
        )
    else:
        uri = facts.job.http_target.uri if facts.job is not None else "?"
        fix = (
            f"the job calls {uri}; if that is not this service's URL ({facts.service.uri}), "
            f"{STEP_SCHEDULE}"
        )
    created = f"; {newest.name} created {when(newest.created, facts.zone)}" if newest else ""
    return Finding(
        CHECK,
        "warning",
        f"route {route} is served by {', '.join(s.name for s in live)} now, but the job's "
        "last attempt got 404",
        refused + created,
        fix,
    )


def _fine(facts: Facts, live: list[Serving]) -> Finding:
    route = facts.route
    known = [s for s in live if s.routes is not None]
    if not known:
        names = ", ".join(s.name for s in live)
        return ok(
            CHECK,
            f"the routes {names} serves are unknown (not deployed by opslib)",
            f"no 404 on {route} in the window",
        )
    return ok(
        CHECK,
        f"route {route} is served by {', '.join(s.name for s in known)}",
        "; ".join(f"{s.name} serves {', '.join(s.routes or [])}" for s in known),
    )


def _last_had(facts: Facts) -> str:
    """The newest revision (that started) whose source served the route, or none."""
    route = facts.route
    text = f"the newest revision that served {route}: "
    for revision in facts.revisions or []:
        failed = any(c.state.name == "CONDITION_FAILED" for c in revision.conditions)
        if not failed and route in (routes_of(revision) or []):
            name = revision.name.rsplit("/", 1)[-1]
            return f"{text}{name} (created {when(revision.create_time, facts.zone)})"
    return f"{text}none (no revision of {facts.spec.service} had it)"


def _fix(facts: Facts, lacking: list[Serving]) -> str:
    """Redeploy the whole folder; or re-apply the job when only the live job's path is stale."""
    spec, route = facts.spec, facts.route
    if route != spec.job.route and all(spec.job.route in (s.routes or []) for s in lacking):
        return (
            f"the live job calls {route}, but the spec's route is {spec.job.route}, which "
            f"{', '.join(s.name for s in lacking)} serves: {STEP_SCHEDULE} (it points the job "
            "at the spec's route)"
        )
    command, folder = redeploy_command(facts)
    return (
        f"redeploy every job of service {spec.service} from its folder {folder}: {command} "
        f"(writes each job into {folder} and deploys the folder once; a deploy from a folder "
        "without a job's route drops that route again)"
    )


def redeploy_command(facts: Facts) -> tuple[str, str]:
    """`opslib run <every parameters file of the service> --steps 1-3`, and the folder shown."""
    found = _service_files(facts)
    if found is None:  # the keys were given, not a file: say what to pass, guess nothing
        folder = f"{facts.spec.service_dir}/"
        return f"opslib run <every parameters file naming {facts.spec.service}> --steps 1-3", folder
    files, folder = found
    return shlex.join(["opslib", "run", *files, "--steps", "1-3"]), folder  # from the root


def _service_files(facts: Facts) -> tuple[list[str], str] | None:
    """The parameters files naming this service (this job's first) and its folder, relative to
    the project root; None when this job's file cannot be found."""
    params = facts.params
    if params is None or not params.is_file():  # papermill -f: the keys, not a file
        return None
    try:
        session = open_session(params, facts.spec.target)
        others = [p for p in params_files(session.params.parent) if p != session.params]
        files = [session.params] + [p for p in others if _same_service(p, session.spec)]
    except OpslibError:
        return None
    root = session.root
    folder = shown(session.service_dir, root) + "/"
    return [shown(p, root) for p in files], folder


def _same_service(path: Path, spec: Spec) -> bool:
    other = _load(path)
    return other is not None and other.service_key == spec.service_key


def _load(path: Path) -> Spec | None:
    """The spec in `path`, or None when it does not load (the doctor reads, it does not judge)."""
    try:
        return load_spec(path)
    except OpslibError:
        return None
