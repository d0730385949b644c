"""Plans: what a step will change, computed before anything is changed.

A step builds a `Plan` by reading only; `apply` happens after, and a dry run simply stops at
the plan. The same plan renders as a DataFrame in notebooks and as a table in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

Action = Literal["create", "update", "delete", "no change"]


def compare(desired: dict[str, Any], live: dict[str, Any] | None) -> tuple[Action, tuple[str, ...]]:
    """A resource's action and the fields that differ, so every step words a diff alike."""
    if live is None:
        return "create", ()
    differ = tuple(k for k in desired if desired[k] != live[k])
    return ("update" if differ else "no change"), differ


@dataclass(frozen=True)
class Change:
    """One resource a step would create or update (or leave as it is)."""

    step: str
    resource: str
    action: Action
    fields: tuple[str, ...] = ()
    detail: str = ""
    gcloud: str = ""  # the equivalent command, so users can see and reproduce what opslib does


@dataclass
class Plan:
    """The changes of one step, in the order they will be applied."""

    changes: list[Change] = field(default_factory=list)

    def add(self, change: Change) -> None:
        self.changes.append(change)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "no change"]

    def to_frame(self) -> pd.DataFrame:
        rows = [
            {
                "step": c.step,
                "resource": c.resource,
                "action": c.action,
                "fields": ", ".join(c.fields),
                "detail": c.detail,
                "gcloud": c.gcloud,
            }
            for c in self.changes
        ]
        columns = ["step", "resource", "action", "fields", "detail", "gcloud"]
        return pd.DataFrame(rows, columns=columns)
