"""Cloud Monitoring's rules for channels and policies, written from Google's documents.

Sources: the v3 reference (AlertPolicy, NotificationChannel, AlertStrategy), "Configure
log-based alerting policies" and "Create and manage notification channels". Marked [?] where
the exact wording of Google's error is not documented.
"""

from __future__ import annotations

import re

from opslib.localcloud.errors import ApiError, invalid

# Channel types localcloud delivers, with the labels each requires (notificationChannelDescriptors).
CHANNEL_TYPES: dict[str, tuple[str, ...]] = {
    "email": ("email_address",),
    "webhook_tokenauth": ("url",),
    "webhook_basicauth": ("url", "username", "password"),
}
# Labels Google never returns in clear text (the descriptor marks them as secrets).
OBFUSCATED = {"password"}
# Log-based policies: a notification rate limit is required, at least 5 minutes; an incident
# closes on its own after autoClose (at least 30 minutes; 7 days when unset).
RATE_LIMIT_MIN = 300.0
AUTO_CLOSE_MIN = 1800.0
AUTO_CLOSE_DEFAULT = 7 * 24 * 3600.0
DISPLAY_NAME_MAX = 512
USER_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
USER_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
SEVERITIES = ("SEVERITY_UNSPECIFIED", "CRITICAL", "ERROR", "WARNING")
COMBINERS = ("COMBINE_UNSPECIFIED", "AND", "OR", "AND_WITH_MATCHING_RESOURCE")
# labelExtractors: EXTRACT(field) or REGEXP_EXTRACT(field, "regex") (Logging's log-based metrics).
EXTRACTOR = re.compile(r'^\s*(EXTRACT|REGEXP_EXTRACT)\(\s*([^,)]+?)\s*(?:,\s*"(.*)")?\s*\)\s*$')


def check_channel(body: dict) -> None:
    """A channel needs a known type and that type's labels."""
    kind = body.get("type")
    if not kind:
        raise invalid("Field notification_channel.type is required.", "notification_channel.type")
    if kind not in CHANNEL_TYPES:
        raise invalid(
            f"Unknown notification channel type: {kind}.", "notification_channel.type"
        )  # [?] wording
    labels = body.get("labels") or {}
    for label in CHANNEL_TYPES[kind]:
        if not labels.get(label):
            raise invalid(
                f"Notification channel of type {kind} requires label {label}.",
                f"notification_channel.labels[{label}]",
            )  # [?] wording
    unknown = sorted(set(labels) - set(CHANNEL_TYPES[kind]))
    if unknown:
        raise invalid(
            f"Label {unknown[0]} is not defined for notification channel type {kind}.",
            f"notification_channel.labels[{unknown[0]}]",
        )
    check_user_labels(body.get("userLabels") or {}, "notification_channel")


def check_user_labels(labels: dict, where: str) -> None:
    """User label keys and values: lowercase letters, digits, '_' and '-', at most 63."""
    for key, value in labels.items():
        if not USER_LABEL.match(key) or not USER_LABEL_VALUE.match(str(value)):
            raise invalid(
                f"User label {key!r} is invalid: keys and values use lowercase letters, "
                "digits, underscores and dashes, at most 63 characters; keys start with a letter.",
                f"{where}.user_labels",
            )


def check_policy(body: dict) -> None:
    """What Google checks on a policy before it stores it (log-match policies in full)."""
    if not body.get("displayName"):
        raise invalid("Field alert_policy.display_name is required.", "alert_policy.display_name")
    if len(body["displayName"]) > DISPLAY_NAME_MAX:
        raise invalid("alert_policy.display_name is too long.", "alert_policy.display_name")
    conditions = body.get("conditions") or []
    if not conditions:
        raise invalid(
            "Field alert_policy.conditions must contain at least one condition.",
            "alert_policy.conditions",
        )
    logs = [c for c in conditions if "conditionMatchedLog" in c]
    if logs and len(conditions) > 1:
        raise invalid(
            "A policy with a log-match condition can have only one condition.",
            "alert_policy.conditions",
        )
    if not logs:
        raise ApiError(
            "UNIMPLEMENTED", "localcloud evaluates log-match conditions only (conditionMatchedLog)."
        )
    if not (logs[0]["conditionMatchedLog"].get("filter") or "").strip():
        raise invalid(
            "Field alert_policy.conditions[0].condition_matched_log.filter is required.",
            "alert_policy.conditions[0].condition_matched_log.filter",
        )
    for key, text in (logs[0]["conditionMatchedLog"].get("labelExtractors") or {}).items():
        if not EXTRACTOR.match(text):
            raise invalid(
                f"Invalid label extractor for {key}: {text}",
                "alert_policy.conditions[0].condition_matched_log.label_extractors",
            )
    check_user_labels(body.get("userLabels") or {}, "alert_policy")
