"""Delivering an incident: Google's webhook JSON (version 1.2) by HTTP POST, e-mail to a file.

The webhook body follows "Notification channels: webhooks" (schema version 1.2): an `incident`
with its id, scoping project, times as epoch seconds, state, summary, resource, policy and
condition names, user labels and the documentation with its variables substituted
(`${log.extracted_label.KEY}`, `${policy.display_name}`, `${policy.user_label.KEY}`,
`${resource.type}`, `${resource.label.KEY}`, `${project}`). A `webhook_basicauth` channel
sends its username and password as HTTP Basic auth. localcloud only delivers to this machine
(127.0.0.1, localhost): a channel pointing elsewhere is recorded as not delivered. E-mail is
appended as one JSON line per message to `outbox.jsonl` in the state directory.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from opslib.localcloud.clock import parse_rfc3339

VARIABLE = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
TIMEOUT = 10.0


def documentation(policy: dict, alert: dict) -> dict[str, str]:
    """The policy's documentation with the variables Google substitutes filled in."""
    doc = policy.get("documentation") or {}
    values = {
        "policy.display_name": policy.get("displayName", ""),
        "resource.type": alert.get("resource", {}).get("type", ""),
        "project": policy["name"].split("/")[1],
    }
    keyed = {
        "log.extracted_label": alert.get("log", {}).get("extractedLabels", {}),
        "policy.user_label": policy.get("userLabels", {}),
        "resource.label": alert.get("resource", {}).get("labels", {}),
    }

    def fill(match: re.Match[str]) -> str:
        whole = match.group(1)
        for prefix, table in keyed.items():
            if whole.startswith(prefix + "."):
                return str(table.get(whole[len(prefix) + 1 :], ""))
        return str(values.get(whole, match.group(0)))

    return {
        "content": VARIABLE.sub(fill, doc.get("content", "")),
        "mime_type": doc.get("mimeType", "text/markdown"),
        "subject": VARIABLE.sub(fill, doc.get("subject", "")),
    }


def webhook_body(policy: dict, condition: dict, alert: dict, project_number: str) -> dict:
    """The JSON Google POSTs to a webhook channel (schema version 1.2)."""
    project = policy["name"].split("/")[1]
    incident_id = alert["name"].rsplit("/", 1)[-1]
    resource = alert.get("resource", {})
    labels = resource.get("labels", {})
    summary = (
        f"Log match condition fired for {resource.get('type', 'a resource')}"
        + (f" with {', '.join(f'{k}={v}' for k, v in sorted(labels.items()))}" if labels else "")
        + "."
    )
    return {
        "version": "1.2",
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": project,
            "scoping_project_number": int(project_number),
            "url": f"https://console.cloud.google.com/monitoring/alerting/alerts/{incident_id}"
            f"?project={project}",
            "severity": policy.get("severity", "No severity").title(),
            "started_at": int(parse_rfc3339(alert["openTime"]).timestamp()),
            "ended_at": None,
            "state": "open",
            "summary": summary,
            "apigee_url": "",
            "observed_value": "",
            "resource": resource,
            "resource_type_display_name": resource.get("type", ""),
            "resource_id": "",
            "resource_display_name": labels.get("job_id") or labels.get("service_name", ""),
            "resource_name": "",
            "metric": {"type": "", "displayName": "", "labels": {}},
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": policy.get("displayName", ""),
            "policy_user_labels": policy.get("userLabels", {}),
            "documentation": documentation(policy, alert),
            "condition": {
                "name": condition["name"],
                "displayName": condition.get("displayName", ""),
                "conditionMatchedLog": condition["conditionMatchedLog"],
            },
            "condition_name": condition.get("displayName", ""),
            "threshold_value": "",
        },
    }


class Sender:
    """Sends notifications and keeps what happened to each (for localcloud's control route)."""

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.sent: list[dict[str, Any]] = []

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.session:
            await self.session.close()

    async def send(self, policy: dict, condition: dict, alert: dict, channels: list) -> None:
        number = self.cloud.project_number(policy["name"].split("/")[1])
        body = webhook_body(policy, condition, alert, number)
        await asyncio.gather(*(self._one(c, body, alert) for c in channels))

    async def _one(self, channel: dict, body: dict, alert: dict) -> None:
        kind, labels = channel["type"], channel.get("labels", {})
        if kind == "email":
            outcome = self._mail(labels["email_address"], body)
        else:
            outcome = await self._post(labels, kind, body)
        self.sent.append(
            {"alert": alert["name"], "channel": channel["name"], "time": time.time(), **outcome}
        )

    def _mail(self, address: str, body: dict) -> dict[str, Any]:
        incident = body["incident"]
        message = {
            "to": address,
            "subject": f"[ALERT - {incident['severity']}] {incident['policy_name']}",
            "body": f"{incident['summary']}\n\n{incident['documentation']['content']}",
            "incident_id": incident["incident_id"],
        }
        with (self.cloud.state_dir / "outbox.jsonl").open("a") as handle:
            handle.write(json.dumps(message) + "\n")
        return {"delivered": True}

    async def _post(self, labels: dict, kind: str, body: dict) -> dict[str, Any]:
        url = labels["url"]
        if not _is_local(url):
            return {"delivered": False, "error": "localcloud delivers only to this machine"}
        auth = None
        if kind == "webhook_basicauth":
            auth = aiohttp.BasicAuth(labels["username"], labels["password"])
        if self.session is None:
            self.session = aiohttp.ClientSession()
        try:
            async with self.session.post(
                url, json=body, auth=auth, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
            ) as response:
                await response.read()
                ok = 200 <= response.status < 300
                return {"delivered": ok, "status": response.status}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"delivered": False, "error": type(exc).__name__}


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
