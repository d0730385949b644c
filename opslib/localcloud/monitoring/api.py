"""Cloud Monitoring v3 REST routes: notificationChannels and alertPolicies (create, list, get,
patch, delete) and the incidents they opened as `projects.alerts` (list, get).

Lists page with `pageSize`/`pageToken` and report `totalSize`; a PATCH applies the fields its
`updateMask` names (the whole resource without one). Alerts take the filter `state="OPEN"`
(or CLOSED); other filters answer INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.monitoring import rules
from opslib.localcloud.monitoring.backend import Monitoring, shown_alert
from opslib.localcloud.router import Call, Router

ANY = schema.ANY
S = schema.SCALAR
RECORD = {"mutateTime": S, "mutatedBy": S}
CHANNEL_SCHEMA: dict[str, Any] = {
    "name": S,
    "type": S,
    "displayName": S,
    "description": S,
    "labels": ANY,
    "userLabels": ANY,
    "enabled": S,
    "verificationStatus": S,
    "creationRecord": RECORD,
    "mutationRecords": [RECORD],
}
CONDITION = {
    "name": S,
    "displayName": S,
    "conditionMatchedLog": {"filter": S, "labelExtractors": ANY},
    "conditionThreshold": ANY,
    "conditionAbsent": ANY,
    "conditionMonitoringQueryLanguage": ANY,
    "conditionPrometheusQueryLanguage": ANY,
    "conditionSql": ANY,
}
POLICY_SCHEMA: dict[str, Any] = {
    "name": S,
    "displayName": S,
    "documentation": {"content": S, "mimeType": S, "subject": S, "links": ANY},
    "userLabels": ANY,
    "conditions": [CONDITION],
    "combiner": S,
    "enabled": S,
    "validity": ANY,
    "notificationChannels": ANY,
    "creationRecord": RECORD,
    "mutationRecord": RECORD,
    "alertStrategy": {
        "notificationRateLimit": {"period": S},
        "notificationPrompts": ANY,
        "autoClose": S,
        "notificationChannelStrategy": ANY,
    },
    "severity": S,
}
STATE_FILTER = re.compile(r'^\s*state\s*=\s*"?(OPEN|CLOSED)"?\s*$')


def register(router: Router, cloud: Cloud) -> Monitoring:
    """Serve channels, policies and alerts; the server keeps the backend for its gRPC front."""
    backend = Monitoring(cloud)
    _channels(router, cloud, backend, "/v3/projects/{project}/notificationChannels")
    _policies(router, cloud, backend, "/v3/projects/{project}/alertPolicies")
    _alerts(router, cloud, backend, "/v3/projects/{project}/alerts")
    return backend


def project_of(cloud: Cloud, call: Call) -> str:
    """The project id of the call (a number localcloud handed out works too)."""
    return cloud.project_id(call.params["project"])


def page(key: str, items: list[Any], query: dict[str, str]) -> dict[str, Any]:
    chunk, token = schema.page(items, query, 1000, 1000)
    answer: dict[str, Any] = {key: chunk, "totalSize": len(items)}
    return {**answer, **({"nextPageToken": token} if token else {})}


def policy_body(body: dict[str, Any]) -> dict[str, Any]:
    """Enums sent as numbers (protobuf JSON allows them) kept as names."""
    checked = schema.check(body, POLICY_SCHEMA, "alert_policy")
    for key, names in (("combiner", rules.COMBINERS), ("severity", rules.SEVERITIES)):
        if key in checked:
            mapping = dict(enumerate(names))
            checked[key] = schema.enum_name(checked[key], mapping, f"alert_policy.{key}")
    return checked


def _mask(call: Call) -> list[str]:
    return [schema.camel(p) for p in call.query.get("updateMask", "").split(",") if p]


def _channels(router: Router, cloud: Cloud, backend: Monitoring, base: str) -> None:
    def name(call: Call) -> str:
        return f"projects/{project_of(cloud, call)}/notificationChannels/{call.params['id']}"

    async def create(call: Call) -> dict[str, Any]:
        body = schema.check(await call.json(), CHANNEL_SCHEMA, "notification_channel")
        return backend.create_channel(project_of(cloud, call), body)

    async def list_(call: Call) -> dict[str, Any]:
        prefix = f"projects/{project_of(cloud, call)}/"
        items = [backend.shown_channel(c) for n, c in sorted(backend.channels.items())]
        return page(
            "notificationChannels", [c for c in items if c["name"].startswith(prefix)], call.query
        )

    async def get(call: Call) -> dict[str, Any]:
        return backend.shown_channel(backend.channel(name(call)))

    async def patch(call: Call) -> dict[str, Any]:
        body = schema.check(await call.json(), CHANNEL_SCHEMA, "notification_channel")
        return backend.patch_channel(name(call), body, _mask(call))

    async def delete(call: Call) -> dict[str, Any]:
        backend.delete_channel(name(call), call.query.get("force", "").lower() == "true")
        return {}

    router.add("POST", base, create)
    router.add("GET", base, list_)
    router.add("GET", base + "/{id}", get)
    router.add("PATCH", base + "/{id}", patch)
    router.add("DELETE", base + "/{id}", delete)


def _policies(router: Router, cloud: Cloud, backend: Monitoring, base: str) -> None:
    def name(call: Call) -> str:
        return f"projects/{project_of(cloud, call)}/alertPolicies/{call.params['id']}"

    async def create(call: Call) -> dict[str, Any]:
        return backend.create_policy(project_of(cloud, call), policy_body(await call.json()))

    async def list_(call: Call) -> dict[str, Any]:
        prefix = f"projects/{project_of(cloud, call)}/"
        items = [p for n, p in sorted(backend.policies.items()) if n.startswith(prefix)]
        return page("alertPolicies", items, call.query)

    async def get(call: Call) -> dict[str, Any]:
        return backend.policy(name(call))

    async def patch(call: Call) -> dict[str, Any]:
        return backend.patch_policy(name(call), policy_body(await call.json()), _mask(call))

    async def delete(call: Call) -> dict[str, Any]:
        backend.delete_policy(name(call))
        return {}

    router.add("POST", base, create)
    router.add("GET", base, list_)
    router.add("GET", base + "/{id}", get)
    router.add("PATCH", base + "/{id}", patch)
    router.add("DELETE", base + "/{id}", delete)


def _alerts(router: Router, cloud: Cloud, backend: Monitoring, base: str) -> None:
    async def list_(call: Call) -> dict[str, Any]:
        backend.close_expired()
        prefix = f"projects/{project_of(cloud, call)}/"
        wanted = None
        if call.query.get("filter"):
            match = STATE_FILTER.match(call.query["filter"])
            if not match:
                raise invalid(f"Invalid filter: {call.query['filter']}", "filter")  # [?]
            wanted = match.group(1)
        items = [
            shown_alert(a)
            for n, a in sorted(backend.alerts.items(), key=lambda kv: kv[1]["openTime"])
            if n.startswith(prefix) and (wanted is None or a["state"] == wanted)
        ]
        return page("alerts", items, call.query)

    async def get(call: Call) -> dict[str, Any]:
        backend.close_expired()
        name = f"projects/{project_of(cloud, call)}/alerts/{call.params['id']}"
        if name not in backend.alerts:
            raise ApiError("NOT_FOUND", f"Alert {name} does not exist.")  # [?]
        return shown_alert(backend.alerts[name])

    router.add("GET", base, list_)
    router.add("GET", base + "/{id}", get)
