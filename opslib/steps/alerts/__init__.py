"""Step `alerts`: the Cloud Monitoring notification channels and log-match alert policies of
one automation, created, updated or removed so they match its `alerts:` block.

Plan, then apply: `plan` only reads (the automation's channels and policies, found by their
user labels, and each webhook's URL from Secret Manager), diffs desired and live field by field
(`desired`), and says what it would change with the gcloud equivalent; a rerun of an unchanged
spec plans no change and makes no mutating call. Channels go first (a policy names them), then
policies; what the spec no longer asks for is deleted, policies before their channels. Without
an `alerts:` block every channel and policy of the automation is removed (so does destroy).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import monitoring_v3

from opslib.cloud.clients import Clients
from opslib.cloud.errors import call
from opslib.cloud.session import Session
from opslib.core.plan import Change, Plan
from opslib.spec import names
from opslib.spec.model import Spec
from opslib.steps.alerts import desired as d
from opslib.steps.alerts.gcloud import channel_command, policy_command

STEP = "alerts"


@dataclass
class Planned:
    """The plan and what applying it needs, in order."""

    plan: Plan
    channels: list[tuple[str, dict[str, Any], monitoring_v3.NotificationChannel | None, tuple]] = (
        field(default_factory=list)
    )
    policies: list[tuple[str, dict[str, Any], monitoring_v3.AlertPolicy | None, tuple]] = field(
        default_factory=list
    )
    stale_policies: list[str] = field(default_factory=list)
    stale_channels: list[str] = field(default_factory=list)


def _where(spec: Spec) -> str:
    return f"alerts of job {spec.job.name}"


def _call(spec: Spec, fn: Callable[..., Any], **kwargs: Any) -> Any:
    return call(fn, _where(spec), "monitoring", **kwargs)


def _ours(spec: Spec, labels: Any) -> bool:
    return all(labels.get(k) == v for k, v in names.alert_labels(spec).items())


Found = tuple[dict[str, Any], dict[str, Any]]


def read_project(spec: Spec, clients: Clients) -> tuple[list[Any], list[Any]]:
    """Every channel and policy of the spec's project (two list calls; status shares them)."""
    parent = names.project(spec)
    channels = _call(spec, clients.channels.list_notification_channels, name=parent)
    policies = _call(spec, clients.alert_policies.list_alert_policies, name=parent)
    return list(channels), list(policies)


def mine(spec: Spec, channels: list[Any], policies: list[Any]) -> Found:
    """The automation's channels and policies among a project's, by display name."""
    return (
        {c.display_name: c for c in channels if _ours(spec, c.user_labels)},
        {p.display_name: p for p in policies if _ours(spec, p.user_labels)},
    )


def live(spec: Spec, clients: Clients) -> Found:
    """The automation's live channels and policies, by display name."""
    return mine(spec, *read_project(spec, clients))


def _webhook_url(spec: Spec, clients: Clients, secret: tuple[str, str]) -> str:
    """The URL a webhook channel posts to, read from Secret Manager (never shown)."""
    version = names.secret_version(spec.project, *secret)
    answer = call(
        clients.secrets.access_secret_version, _where(spec), "secretmanager", name=version
    )
    return answer.payload.data.decode().strip()


def desired_channels(spec: Spec, clients: Clients) -> list[dict[str, Any]]:
    channels = spec.alerts.channels if spec.alerts else []
    return [
        d.desired_channel(spec, c, _webhook_url(spec, clients, c.secret) if c.secret else None)
        for c in channels
    ]


def plan(spec: Spec, clients: Clients, doctor: str, found: Found | None = None) -> Planned:
    """Read the live channels and policies (unless `found` has them) and say what would
    change; no writes. `opslib status` shows the pending changes as drift."""
    live_channels, live_policies = found if found is not None else live(spec, clients)
    planned = Planned(Plan())
    wanted = desired_channels(spec, clients)
    for want in wanted:
        name = want["display_name"]
        have = live_channels.get(name)
        change = d.channel_diff(want, have)
        cmd = channel_command(spec, want, have, change.fields)
        planned.plan.add(Change(STEP, name, change.action, change.fields, change.detail(), cmd))
        planned.channels.append((name, want, have, change.fields))
    shown = {c.name: c.display_name for c in live_channels.values()}
    display = [c["display_name"] for c in wanted]
    for kind in d.kinds(spec) if spec.alerts else ():
        want = d.desired_policy(spec, kind, display, doctor)
        name = want["display_name"]
        have = live_policies.get(name)
        change = d.policy_diff(want, have, shown)
        named = {c.display_name: c.name for c in live_channels.values()}
        cmd = policy_command(spec, name, have, change.action, want, named)
        planned.plan.add(Change(STEP, name, change.action, change.fields, change.detail(), cmd))
        planned.policies.append((name, want, have, change.fields))
    kept = {name for name, *_ in planned.policies}
    for name, policy in live_policies.items():
        if name not in kept:
            planned.plan.add(
                Change(STEP, name, "delete", (), "", policy_command(spec, name, policy, "delete"))
            )
            planned.stale_policies.append(policy.name)
    kept = set(display)
    for name, channel in live_channels.items():
        if name not in kept:
            cmd = channel_command(spec, None, channel, ())
            planned.plan.add(Change(STEP, name, "delete", (), "", cmd))
            planned.stale_channels.append(channel.name)
    if not planned.plan.changes:
        planned.plan.add(Change(STEP, names.alert_policy(spec, "*"), "no change", (), "no alerts"))
    return planned


def apply(spec: Spec, clients: Clients, doctor: str, dry_run: bool = False) -> Plan:
    """Make the channels and policies match the spec; an unchanged spec makes no writes."""
    planned = plan(spec, clients, doctor)
    if dry_run or not planned.plan.pending:
        return planned.plan
    parent, named = names.project(spec), {}
    for display, want, have, fields in planned.channels:
        if have is None:
            have = _call(
                spec,
                clients.channels.create_notification_channel,
                name=parent,
                notification_channel=want,
            )
        elif fields:
            mask = {"paths": sorted({f.split(".")[0] for f in fields})}
            have = _call(
                spec,
                clients.channels.update_notification_channel,
                notification_channel={**want, "name": have.name},
                update_mask=mask,
            )
        named[display] = have.name
    for _, want, have, fields in planned.policies:
        want = {**want, "notification_channels": [named[n] for n in want["notification_channels"]]}
        if have is None:
            _call(spec, clients.alert_policies.create_alert_policy, name=parent, alert_policy=want)
        elif fields:
            body = {**want, "name": have.name}
            body["conditions"] = [{**want["conditions"][0], "name": have.conditions[0].name}]
            _call(spec, clients.alert_policies.update_alert_policy, alert_policy=body)
    for name in planned.stale_policies:
        _call(spec, clients.alert_policies.delete_alert_policy, name=name, missing_ok=True)
    for name in planned.stale_channels:
        _call(
            spec,
            clients.channels.delete_notification_channel,
            name=name,
            force=True,
            missing_ok=True,
        )
    return planned.plan


def delete(spec: Spec, clients: Clients, dry_run: bool = False) -> Plan:
    """Remove every channel and policy of the automation (what destroy does)."""
    return apply(spec.model_copy(update={"alerts": None}), clients, "", dry_run)


def doctor_command(session: Session) -> str:
    """`opslib doctor PARAMS`, the file from the project root (the same from any folder)."""
    params = session.params.resolve()
    root = session.root.resolve()
    shown = params.relative_to(root).as_posix() if params.is_relative_to(root) else str(params)
    return shlex.join(["opslib", "doctor", shown])


def alerts(session: Session, dry_run: bool = False) -> Plan:
    """The step for one opened automation: its spec, its clients, its doctor command."""
    return apply(session.spec, session.clients, doctor_command(session), dry_run)
