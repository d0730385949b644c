"""Drift: what steps 3 and 4 would change if they ran now, as `field: live -> file`.

There is no second diff here: each resource is compared by the step that applies it (the
Scheduler job by `steps.schedule.desired.job_diff`, the service by
`steps.deploy.desired.service_diff`, a Cloud Run job by `steps.deploy.desired.job_diff`, the
alert channels and policies by `steps.alerts.plan`),
from the same desired state step 3 deploys (`fleet.load.service_spec`, `job_spec`). The image
is the tag of the service folder as it is now, so an edit not yet deployed is drift too; the
routes the source serves are parsed only when that tag differs from the live one (the same
source serves the same routes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from opslib.core.plan import Diff
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps.deploy import desired as deploy
from opslib.steps.deploy.source import source_routes, tag_of
from opslib.steps.schedule.desired import job_diff as scheduler_diff


@dataclass
class Folder:
    """A service folder as step 3 would ship it now: its image tag, and its routes on demand."""

    path: Path

    @cached_property
    def tag(self) -> str | None:
        """The packed folder's tag; None when there is no folder to ship."""
        if not (self.path / "Dockerfile").is_file():
            return None
        return tag_of(self.path)

    @cached_property
    def routes(self) -> list[str]:
        return source_routes(self.path)

    def image(self, spec: Spec, live_image: str) -> str:
        """The image step 3 would deploy; the live one when the folder cannot be packed."""
        return live_image if self.tag is None else names.image(spec, self.tag)


def texts(diff: Diff) -> list[str]:
    """Each change as the status row shows it."""
    return [str(change) for change in diff.changes]


def service_drift(
    spec: Spec, folder: Folder, live: Any, invokers: list[str], policy: Any
) -> list[str]:
    """The service's fields step 3 would change, and its invokers; `spec` is what all its
    route jobs ask."""
    if live is None:
        return []
    running = live.template.containers[0].image if live.template.containers else ""
    image = folder.image(spec, running)
    routes = folder.routes if image != running else None
    changed = deploy.service_diff(spec, image, routes, live)
    return texts(changed) + texts(deploy.invoker_diff(invokers, policy))


def run_job_drift(spec: Spec, folder: Folder, live: Any, policy: Any) -> list[str]:
    """The Cloud Run job's fields step 3 would change (`spec` with its overlap env), and its
    invoker (run.jobs.run for Scheduler's OAuth call)."""
    if live is None:
        return []
    containers = live.template.template.containers
    image = folder.image(spec, containers[0].image if containers else "")
    invoker = [f"serviceAccount:{spec.invoker_account}"]
    return texts(deploy.job_diff(spec, image, live)) + texts(deploy.invoker_diff(invoker, policy))


def job_drift(spec: Spec, service_url: str | None, job: Any) -> list[str]:
    """The Scheduler job's fields step 4 would change (the target URL once the service has
    one)."""
    if job is None:
        return []
    return texts(scheduler_diff(spec, service_url, job))


def alerts_drift(session: Any, channels: list[Any], policies: list[Any]) -> list[str]:
    """What `opslib alerts` would change now, one `resource: action (fields)` each."""
    from opslib.steps import alerts

    spec = session.spec
    found = alerts.mine(spec, channels, policies)
    planned = alerts.plan(spec, session.clients, alerts.doctor_command(session), found)
    return [
        f"{c.resource}: {c.action}" + (f" ({c.detail})" if c.detail else "")
        for c in planned.plan.pending
    ]
