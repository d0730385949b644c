"""`opslib alerts --test`: a test notification through every channel of an automation, by the
path a real one takes, and what became of it.

A temporary log-match policy (its user labels say `opslib_alert: test`) names every channel of
the automation and matches one line written for this probe only; the probe writes that line
through Cloud Logging, waits until Monitoring has opened the incident (its `projects.alerts`),
then deletes the policy. One row per channel says the incident Monitoring notified it with;
Monitoring does not report a channel's delivery itself, so the last word is the channel's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd

from opslib.cloud.session import Session
from opslib.core.errors import OpslibError
from opslib.spec import names
from opslib.steps.alerts.desired import AUTO_CLOSE, RATE_LIMIT

LOG_ID = "opslib-alerts-test"
WAIT = 300.0  # seconds: log-based incidents can take minutes to open on Google Cloud


def _policy(session: Session, channels: list[str], probe: str) -> dict[str, Any]:
    spec = session.spec
    log_name = f"{names.project(spec)}/logs/{LOG_ID}"
    return {
        "display_name": names.alert_policy(spec, "test"),
        "user_labels": {**names.alert_labels(spec), "opslib_alert": "test"},
        "documentation": {
            "content": f"opslib alerts --test for {spec.job.name}: a test notification; "
            "nothing failed.",
            "mime_type": "text/markdown",
        },
        "conditions": [
            {
                "display_name": f"{spec.job.name} test",
                "condition_matched_log": {
                    "filter": f'logName="{log_name}" AND jsonPayload.probe="{probe}"'
                },
            }
        ],
        "combiner": "OR",
        "notification_channels": channels,
        "alert_strategy": {
            "notification_rate_limit": {"period": timedelta(seconds=RATE_LIMIT)},
            "auto_close": timedelta(seconds=AUTO_CLOSE),
        },
    }


def _incident(session: Session, policy: str) -> dict[str, Any] | None:
    """The open incident of `policy`, if Monitoring has opened it."""
    http, base = session.clients.monitoring_http
    url = f"{base}/v3/{names.project(session.spec)}/alerts"
    answer = http.get(url, params={"filter": 'state="OPEN"', "pageSize": 1000}, timeout=30)
    if answer.status_code != 200:
        return None
    found = [a for a in answer.json().get("alerts", []) if a["policy"]["name"] == policy]
    return found[0] if found else None


def send_test(
    session: Session, wait: float = WAIT, sleep: Callable[[float], None] = time.sleep
) -> pd.DataFrame:
    """Send a test notification to every channel of the automation; one row per channel."""
    from opslib.steps.alerts import _call, live

    spec, clients = session.spec, session.clients
    channels, _ = live(spec, clients)
    where = f"alerts of job {spec.job.name}"
    if not channels:
        raise OpslibError(where, "the automation has no notification channel", _apply_fix(session))
    probe = uuid.uuid4().hex
    body = _policy(session, [c.name for c in channels.values()], probe)
    policy = _call(
        spec,
        clients.alert_policies.create_alert_policy,
        name=names.project(spec),
        alert_policy=body,
    )
    try:
        clients.logging.logger(LOG_ID).log_struct(
            {"probe": probe, "message": f"opslib alerts --test {spec.job.name}"},
            severity="NOTICE",
        )
        incident, deadline = None, time.monotonic() + wait
        while incident is None and time.monotonic() < deadline:
            sleep(0.2)
            incident = _incident(session, policy.name)
    finally:
        _call(spec, clients.alert_policies.delete_alert_policy, name=policy.name, missing_ok=True)
    state = "notified" if incident else f"no incident within {wait:g}s"
    return pd.DataFrame(
        [
            {
                "channel": c.display_name.rsplit(") ", 1)[-1],
                "type": c.type_,
                "result": state,
                "incident": incident["name"] if incident else "",
            }
            for c in channels.values()
        ]
    )


def _apply_fix(session: Session) -> str:
    params = session.params
    return f"add an alerts: block to {params.name} and run opslib alerts {params.name} first"
