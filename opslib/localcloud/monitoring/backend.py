"""Channels, policies and incidents of Cloud Monitoring, kept in the wire shape Google returns.

Every log entry Logging stores is matched against each enabled policy's log-match condition
(`observe`). A match opens an incident and notifies the policy's channels once; further
matches while it is open are counted on it and notify no one (one notification per incident).
An incident closes by itself once no entry has matched for the policy's autoClose (log-based
policies notify on opening only: Google's AlertStrategy.notificationPrompts reference).
Incidents are served as Google's Alert resources (`projects.alerts`); their changes are saved
on the server's next one-second tick, so a notification never waits for the disk.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any

from opslib.localcloud.backend import CollectionBackend
from opslib.localcloud.clock import duration_seconds, rfc3339
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.monitoring import delivery, rules

Matcher = Callable[[dict[str, Any]], bool]
POLICY_OUTPUT = ("name", "creationRecord", "mutationRecord", "validity")
CHANNEL_OUTPUT = ("name", "creationRecord", "mutationRecords", "verificationStatus")


def _new_id() -> str:
    return str(random.randrange(10**18, 10**19))


class Monitoring(CollectionBackend):
    """The resources of every project, by full name, and the incidents they opened."""

    COLLECTION = "monitoring"
    MAPS = ("channels", "policies")
    INCIDENTS = "monitoring-alerts"  # apart: saved each tick, without the policies

    def __init__(self, cloud: Any) -> None:
        super().__init__(cloud)
        self.matchers: dict[str, Matcher] = {}
        self.sender = delivery.Sender(cloud)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dirty = False  # incidents changed since the last save (the server ticks each second)

    @property
    def channels(self) -> dict[str, Any]:
        return self.data["channels"]

    @property
    def policies(self) -> dict[str, Any]:
        return self.data["policies"]

    @property
    def alerts(self) -> dict[str, Any]:
        return self.cloud.store.collection(self.INCIDENTS)

    def flush(self) -> None:
        """Save the incidents if they changed (the server's one-second tick)."""
        if self.dirty:
            self.dirty = False
            self.cloud.store.save(self.INCIDENTS)

    def _record(self) -> dict[str, str]:
        return {"mutateTime": rfc3339(self.cloud.clock.now()), "mutatedBy": "localcloud"}

    # Channels

    def create_channel(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        channel = {k: v for k, v in body.items() if k not in CHANNEL_OUTPUT}
        rules.check_channel(channel)
        channel.setdefault("enabled", True)
        record = self._record()
        name = f"projects/{project}/notificationChannels/{_new_id()}"
        channel.update(name=name, creationRecord=record, mutationRecords=[record])
        self.channels[name] = channel
        self.save()
        return self.shown_channel(channel)

    def channel(self, name: str) -> dict[str, Any]:
        if name not in self.channels:
            raise ApiError("NOT_FOUND", f"Notification channel {name} does not exist.")  # [?]
        return self.channels[name]

    def shown_channel(self, channel: dict[str, Any]) -> dict[str, Any]:
        """A channel as Google answers: secret labels obfuscated."""
        labels = {
            k: ("*" * 8 if k in rules.OBFUSCATED else v)
            for k, v in (channel.get("labels") or {}).items()
        }
        return {**channel, "labels": labels} if "labels" in channel else dict(channel)

    def patch_channel(self, name: str, body: dict[str, Any], mask: list[str]) -> dict[str, Any]:
        channel = self.channel(name)
        merged = _merge(channel, body, mask, CHANNEL_OUTPUT)
        rules.check_channel(merged)
        merged["mutationRecords"] = [*channel.get("mutationRecords", []), self._record()]
        self.channels[name] = merged
        self.save()
        return self.shown_channel(merged)

    def delete_channel(self, name: str, force: bool) -> None:
        self.channel(name)
        users = [p for p, v in self.policies.items() if name in v.get("notificationChannels", [])]
        if users and not force:
            raise ApiError(
                "FAILED_PRECONDITION",
                f"Notification channel {name} is referenced by alert policies: "
                f"{', '.join(users)}. Use force to delete it anyway.",
            )  # [?] wording
        for policy in users:
            self.policies[policy]["notificationChannels"].remove(name)
        del self.channels[name]
        self.save()

    # Policies

    def create_policy(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        policy = {k: v for k, v in body.items() if k not in POLICY_OUTPUT}
        name = f"projects/{project}/alertPolicies/{_new_id()}"
        policy = self._checked_policy(project, name, policy)
        record = self._record()
        policy.update(name=name, creationRecord=record, mutationRecord=record)
        self.policies[name] = policy
        self.save()
        return policy

    def policy(self, name: str) -> dict[str, Any]:
        if name not in self.policies:
            raise ApiError("NOT_FOUND", f"Alerting policy {name} does not exist.")  # [?]
        return self.policies[name]

    def patch_policy(self, name: str, body: dict[str, Any], mask: list[str]) -> dict[str, Any]:
        policy = self.policy(name)
        merged = _merge(policy, body, mask, POLICY_OUTPUT)
        project = name.split("/")[1]
        merged = self._checked_policy(project, name, merged)
        merged["mutationRecord"] = self._record()
        self.policies[name] = merged
        self.save()
        return merged

    def delete_policy(self, name: str) -> None:
        self.policy(name)
        del self.policies[name]
        for alert in self.alerts.values():  # Google closes a deleted policy's incidents
            if alert["policy"]["name"] == name and alert["state"] == "OPEN":
                alert.update(state="CLOSED", closeTime=rfc3339(self.cloud.clock.now()))
                self.dirty = True
        self.save()

    def _checked_policy(self, project: str, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        rules.check_policy(policy)
        log = policy["conditions"][0]["conditionMatchedLog"]
        self.matcher(log["filter"])  # a filter Logging cannot read is refused here
        strategy = policy.get("alertStrategy") or {}
        period = duration_seconds((strategy.get("notificationRateLimit") or {}).get("period"))
        if period < rules.RATE_LIMIT_MIN:
            raise invalid(
                "Log-based alerting policies require alert_strategy.notification_rate_limit "
                "with a period of at least 300s.",
                "alert_policy.alert_strategy.notification_rate_limit.period",
            )  # [?] wording
        close = strategy.get("autoClose")
        if close is not None and duration_seconds(close) < rules.AUTO_CLOSE_MIN:
            raise invalid(
                "alert_policy.alert_strategy.auto_close must be at least 1800s.",
                "alert_policy.alert_strategy.auto_close",
            )  # [?] wording
        for channel in policy.get("notificationChannels") or []:
            if not channel.startswith(f"projects/{project}/notificationChannels/"):
                raise invalid(f"Invalid notification channel name {channel}.")
            self.channel(channel)
        policy.setdefault("enabled", True)
        policy.setdefault("combiner", "OR")
        for index, condition in enumerate(policy["conditions"]):
            condition.setdefault("name", f"{name}/conditions/{_new_id()}")
            if not condition["name"].startswith(f"{name}/conditions/"):
                raise invalid(
                    f"Invalid condition name {condition['name']}.",
                    f"alert_policy.conditions[{index}].name",
                )
        return policy

    def matcher(self, text: str) -> Matcher:
        if text not in self.matchers:
            self.matchers[text] = self.cloud.logs.matcher(text)
        return self.matchers[text]

    # Incidents

    def observe(self, entry: dict[str, Any]) -> None:
        """A log entry was stored: open an incident for each policy it matches."""
        now = self.cloud.clock.time()
        self.close_expired(now)
        project = self.cloud.project_id(entry["logName"].split("/")[1])
        for name, policy in list(self.policies.items()):
            owner = self.cloud.project_id(name.split("/")[1])
            if owner != project or not policy.get("enabled", True):
                continue
            condition = policy["conditions"][0]
            if not self.matcher(condition["conditionMatchedLog"]["filter"])(entry):
                continue
            self._matched(policy, condition, entry, now)

    def _matched(self, policy: dict, condition: dict, entry: dict, now: float) -> None:
        for alert in self.alerts.values():
            if alert["policy"]["name"] == policy["name"] and alert["state"] == "OPEN":
                alert["_matches"] += 1
                alert["_last"] = now
                self.dirty = True
                return
        alert = self._open(policy, condition, entry, now)
        self.dirty = True  # saved by the next tick: the notification does not wait for disk
        channels = [self.channels[c] for c in policy.get("notificationChannels", [])]
        channels = [c for c in channels if c.get("enabled", True)]
        if channels and self.loop is not None:
            self.loop.call_soon_threadsafe(self._send, policy, condition, alert, channels)

    def _send(self, policy: dict, condition: dict, alert: dict, channels: list) -> None:
        task = asyncio.ensure_future(self.sender.send(policy, condition, alert, channels))
        self.sender.tasks.add(task)
        task.add_done_callback(self.sender.tasks.discard)

    def _open(self, policy: dict, condition: dict, entry: dict, now: float) -> dict[str, Any]:
        project = policy["name"].split("/")[1]
        name = f"projects/{project}/alerts/{_new_id()}"
        extracted = extract_labels(condition["conditionMatchedLog"], entry)
        alert = {
            "name": name,
            "state": "OPEN",
            "openTime": rfc3339(self.cloud.clock.now()),
            "policy": {
                k: policy[k]
                for k in ("name", "displayName", "userLabels", "severity")
                if k in policy
            },
            "resource": entry.get("resource", {}),
            "log": {"extractedLabels": extracted} if extracted else {},
            "_matches": 1,
            "_last": now,
            "_condition": condition["name"],
            "_insertId": entry.get("insertId", ""),
        }
        self.alerts[name] = alert
        return alert

    def close_expired(self, now: float | None = None) -> int:
        """Close incidents no entry has matched for their policy's autoClose; how many."""
        now = self.cloud.clock.time() if now is None else now
        closed = 0
        for alert in self.alerts.values():
            if alert["state"] != "OPEN":
                continue
            policy = self.policies.get(alert["policy"]["name"], {})
            strategy = policy.get("alertStrategy") or {}
            after = duration_seconds(strategy.get("autoClose"), rules.AUTO_CLOSE_DEFAULT)
            if now - alert["_last"] >= after:
                alert.update(state="CLOSED", closeTime=rfc3339(self.cloud.clock.now()))
                closed += 1
        if closed:
            self.dirty = True
        return closed


def shown_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """An incident as Google's Alert resource (bookkeeping fields left out)."""
    return {k: v for k, v in alert.items() if not k.startswith("_") and v != {}}


def _merge(old: dict, body: dict, mask: list[str], output: tuple[str, ...]) -> dict[str, Any]:
    """PATCH: the masked top-level fields from `body`; without a mask, `body` replaces all."""
    if not mask:
        return {**{k: old[k] for k in output if k in old}, **body}
    merged = dict(old)
    for path in mask:
        top = path.split(".")[0]
        if top in output:
            continue
        if top in body:
            merged[top] = body[top]
        else:
            merged.pop(top, None)
    return merged


def extract_labels(log_match: dict[str, Any], entry: dict[str, Any]) -> dict[str, str]:
    """labelExtractors applied to the entry: EXTRACT(field) or REGEXP_EXTRACT(field, "re")."""
    found: dict[str, str] = {}
    for key, text in (log_match.get("labelExtractors") or {}).items():
        match = rules.EXTRACTOR.match(text)
        if not match:
            continue
        value = _field(entry, match.group(2))
        if value is None:
            continue
        if match.group(1) == "REGEXP_EXTRACT":
            hit = re.search(match.group(3) or "", str(value))
            if not hit:
                continue
            value = hit.group(1) if hit.groups() else hit.group(0)
        found[key] = str(value)
    return found


def _field(entry: dict[str, Any], path: str) -> Any:
    """A dotted field path (`jsonPayload.run_id`, `labels."a.b"`) of an entry, or None."""
    value: Any = entry
    for part in re.findall(r'"([^"]*)"|([^.]+)', path):
        key = part[0] or part[1]
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
