"""The gcloud command equivalent to each change of step `alerts`, so people can see and repeat
it. A webhook's URL is never written out: the command reads it from its secret."""

from __future__ import annotations

import json
import shlex
from typing import Any

from google.cloud import monitoring_v3
from google.protobuf import json_format

from opslib.spec.model import Spec
from opslib.steps.schedule.gcloud import dict_flag


def _labels(spec: Spec, want: dict[str, Any]) -> str:
    labels = want["labels"]
    if "url" not in labels:
        return "--channel-labels=" + shlex.quote(dict_flag(labels))
    channel = next(c for c in spec.alerts.channels if c.key in want["display_name"])  # type: ignore[union-attr]
    secret, version = channel.secret or ("", "latest")
    read = f"$(gcloud secrets versions access {version} --secret={secret} --project={spec.project})"
    return f'--channel-labels="url={read}"'


def channel_command(spec: Spec, want: dict[str, Any] | None, have: Any, fields: tuple) -> str:
    """Create, update (the changed labels) or delete one notification channel."""
    base = ["gcloud", "beta", "monitoring", "channels"]
    project = f"--project={spec.project}"
    if want is None:
        return shlex.join([*base, "delete", have.name, project, "--quiet"])
    if have is None:
        parts = [
            *base,
            "create",
            f"--display-name={want['display_name']}",
            f"--type={want['type']}",
            f"--user-labels={dict_flag(want['user_labels'])}",
            project,
        ]
        return f"{shlex.join(parts)} {_labels(spec, want)}"
    if not fields:
        return ""
    parts = [*base, "update", have.name, project]
    labels = _labels(spec, want).replace("--channel-labels", "--update-channel-labels")
    return f"{shlex.join(parts)} {labels}"


def policy_command(
    spec: Spec,
    display: str,
    have: Any,
    action: str,
    want: dict[str, Any] | None = None,
    named: dict[str, str] | None = None,
) -> str:
    """Create or update a policy from its JSON (gcloud takes log-match conditions only so),
    channels by name (a channel still to create by a placeholder), or delete it."""
    base = ["gcloud", "alpha", "monitoring", "policies"]
    project = f"--project={spec.project}"
    if action == "delete":
        return shlex.join([*base, "delete", have.name, project, "--quiet"])
    if action not in ("create", "update") or want is None:
        return ""
    policy = monitoring_v3.AlertPolicy(
        {
            **want,
            "notification_channels": [
                (named or {}).get(c, f"CHANNEL_OF[{c}]") for c in want["notification_channels"]
            ],
        }
    )
    text = json.dumps(
        json_format.MessageToDict(monitoring_v3.AlertPolicy.pb(policy)), separators=(",", ":")
    )
    verb = ["create"] if action == "create" else ["update", have.name]
    return shlex.join([*base, *verb, f"--policy={text}", project])
