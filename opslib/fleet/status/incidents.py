"""The incident timeline: every Cloud Monitoring incident of a fleet's watched automations,
newest first, each on its own job's clock (the notebook's table; `opslib status` shows the
open ones in its `incidents` column). One `projects.alerts` read per project."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from opslib.fleet.status.read import read_incidents
from opslib.spec import cron

if TYPE_CHECKING:
    from opslib.fleet.load import Fleet

COLUMNS = ("job", "alert", "state", "opened", "closed", "open_for", "incident")


def _local(text: str | None, zone: str) -> Any:
    return pd.Timestamp(text).tz_convert(cron.zone_info(zone)) if text else pd.NaT


def timeline(fleet: Fleet) -> pd.DataFrame:
    """One row per incident of the automations with an `alerts:` block, newest first."""
    watched = [s for s in fleet.sessions if s.spec.alerts is not None]
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (_, project), session in {(s.spec.target, s.spec.project): s for s in watched}.items():
        found.update(read_incidents(session.clients, project, state=None))
    rows = []
    for session in watched:
        spec = session.spec
        zone = spec.schedule.time_zone
        for alert in found.get((spec.job.name, spec.region), []):
            opened = _local(alert.get("openTime"), zone)
            closed = _local(alert.get("closeTime"), zone)
            end = closed if alert.get("closeTime") else pd.Timestamp.now(tz="UTC")
            rows.append(
                {
                    "job": spec.job.name,
                    "alert": alert.get("policy", {}).get("userLabels", {}).get("opslib_alert"),
                    "state": alert.get("state", "").lower(),
                    "opened": opened,
                    "closed": closed,
                    "open_for": (end - opened).floor("s"),
                    "incident": alert["name"].rsplit("/", 1)[-1],
                }
            )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if not len(frame):
        return frame
    order = frame["opened"].map(lambda t: t.timestamp())
    return frame.iloc[order.argsort()[::-1]].reset_index(drop=True)
