"""Plans: what a step will change, computed before anything is changed.

A step builds a `Plan` by reading only; `apply` happens after, and a dry run simply stops at
the plan. The same plan renders as a DataFrame in notebooks and as a table in the CLI.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Action = Literal["create", "update", "delete", "no change"]


@dataclass(frozen=True)
class FieldChange:
    """One field a step would change: its value live and as the spec asks."""

    field: str
    live: object
    desired: object
    hidden: bool = False  # the values may be secrets (headers, body, env values): never shown

    def __str__(self) -> str:
        if not self.hidden:
            return f"{self.field}: {self.live!r} -> {self.desired!r}"
        if isinstance(self.live, dict) and isinstance(self.desired, dict):
            return f"{self.field} changed ({_keys(self.live, self.desired)})"
        return f"{self.field} changed"


def _keys(live: dict, desired: dict) -> str:
    """Which keys of a hidden mapping differ (env var names), without their values."""
    added = [k for k in desired if k not in live]
    removed = [k for k in live if k not in desired]
    changed = [k for k in desired if k in live and live[k] != desired[k]]
    parts = [
        f"{', '.join(keys)} {word}"
        for keys, word in ((added, "added"), (removed, "removed"), (changed, "changed"))
        if keys
    ]
    return "; ".join(parts)


@dataclass(frozen=True)
class Diff:
    """A desired resource against the live one: what a step applies, and what status calls
    drift (one algorithm, so the two can never disagree)."""

    exists: bool
    changes: tuple[FieldChange, ...] = ()

    @property
    def action(self) -> Action:
        if not self.exists:
            return "create"
        return "update" if self.changes else "no change"

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.changes)

    def detail(self) -> str:
        """`field: live -> desired; ...`, hidden values named only."""
        return "; ".join(map(str, self.changes))


def diff(
    desired: Mapping[str, object],
    live: Mapping[str, object] | None,
    hidden: Collection[str] = (),
) -> Diff:
    """Each field of `desired` whose live value differs; `live` None means it does not exist.

    Both sides are flat and normalised by the resource's own module first (Google's defaults
    filled in, units and spellings made canonical), so only a change a step would make counts.
    """
    if live is None:
        return Diff(False)
    changes = tuple(
        FieldChange(name, live.get(name), want, name in hidden)
        for name, want in desired.items()
        if live.get(name) != want
    )
    return Diff(True, changes)


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
