"""What a deployed service runs now: its traffic and its newest revisions, as people check them
after step 3 (like `gcloud run services describe` and `gcloud run revisions list`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call, google_errors
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.spec.rules import format_duration


def _where(spec: Spec) -> str:
    return f"deploy of {spec.service}"


# A terminal condition Google has not filled in says nothing is wrong.
READY_STATES = ("CONDITION_SUCCEEDED", "STATE_UNSPECIFIED")


def unready(service: Any | None) -> str:
    """Why a live service (or Cloud Run job) is not ready, '' when it is: a rollout that failed
    or was cut short leaves it so, and deploying the same spec again is what repairs it."""
    if service is None:
        return ""
    condition = service.terminal_condition
    if condition.state.name in READY_STATES and not service.reconciling:
        return ""
    state = condition.state.name.removeprefix("CONDITION_").lower() or "unknown"
    return (
        f"not ready ({state}): {condition.message}" if condition.message else f"not ready ({state})"
    )


def status(spec: Spec, clients: Clients) -> pd.DataFrame:
    """Revision, URL and traffic of the live service, as users check after a deploy."""
    service = call(clients.run.get_service, _where(spec), "run", name=names.service(spec))
    assert service is not None
    rows = [
        {
            "revision": t.revision or names.short(service.latest_ready_revision),
            "percent": t.percent,
            "url": service.uri,
            "ready": "yes"
            if service.terminal_condition.state.name == "CONDITION_SUCCEEDED"
            else "no",
            "timeout": format_duration(service.template.timeout.total_seconds()),
            "memory": service.template.containers[0].resources.limits.get("memory"),
        }
        for t in service.traffic_statuses
    ]
    return pd.DataFrame(rows, columns=["revision", "percent", "url", "ready", "timeout", "memory"])


def revisions_frame(spec: Spec, clients: Clients, limit: int = 3) -> pd.DataFrame:
    """The newest revisions, ready or not, with their share of traffic (like `revisions list`)."""
    where = _where(spec)
    service = call(clients.run.get_service, where, "run", name=names.service(spec))
    assert service is not None
    traffic = {t.revision: t.percent for t in service.traffic_statuses}
    with google_errors(where, "run"):
        found = list(clients.revisions.list_revisions(parent=names.service(spec)))
    revisions = sorted(found, key=lambda r: r.create_time, reverse=True)[:limit]
    rows = [
        {
            "revision": names.short(r.name),
            "created": r.create_time,
            "ready": _ready(r),
            "traffic": traffic.get(names.short(r.name), 0),
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
