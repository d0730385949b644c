"""How each step notebook ends: one banner saying what changed and what to do next.

`step_done(step, tables, time_zone)` reads the `action` column of the step's own plan tables
(create / update / delete / no change: `core.plan`), so the banner cannot disagree with the
tables above it; the time is on the job's clock, as every banner's (`core.display.banner`).
Step 5's banner is `fleet.steps.verdict`; the doctor's is `doctor.diagnose.verdict`, which
`then` gives its next step.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from opslib.core.display import Banner, banner

# Each step notebook: what it does, and what comes after it.
STEPS = {
    "01": ("write functions", "step 2, 02_patch_endpoint: add the route"),
    "02": ("patch endpoint", "step 3, 03_deploy: build and deploy"),
    "03": ("deploy", "step 4, 04_schedule: schedule the job on its cron"),
    "04": ("schedule", "step 5, 05_verify: run it now and read its logs"),
    "06": ("secrets", "step 3, 03_deploy: mount them on the service"),
    "07": ("doctor", "apply each fix with the command it names, then 05_verify"),
}
ORDER = ("create", "update", "delete", "no change")
WORDS = {"create": "created", "update": "updated", "delete": "deleted", "no change": "no change"}


def changes(tables: Iterable[pd.DataFrame]) -> dict[str, int]:
    """How many rows of the plans say each action, in the order create, update, delete, same."""
    actions = [a for t in tables if "action" in t.columns for a in t["action"].astype(str)]
    counted = {a: actions.count(a) for a in ORDER if a in actions}
    kept = [a for a in actions if a not in ORDER]  # e.g. "kept: edited by you"
    return counted | ({"kept": len(kept)} if kept else {})


def step_done(
    step: str, tables: Iterable[pd.DataFrame], time_zone: str | None, what: str = ""
) -> Banner:
    """`DONE  step 3 deploy batch-service: 1 created, 2 no change  2026-12-08 09:00 KST`, and
    the next step below it."""
    title, after = STEPS[step]
    counted = changes(tables)
    said = ", ".join(f"{n} {WORDS.get(a, a)}" for a, n in counted.items()) or "nothing to do"
    changed = any(a in counted for a in ("create", "update", "delete"))
    word = "CHANGED" if changed else "NO CHANGE"
    head = f"step {int(step)} {title}" + (f" {what}" if what else "")
    return banner(
        "passed", f"{head}: {said}", word=word, detail=f"next: {after}", time_zone=time_zone
    )


def then(verdict: Banner, step: str) -> Banner:
    """A banner made elsewhere (the doctor's), with the step's next step below it."""
    return Banner(verdict.status, verdict.text, f"next: {STEPS[step][1]}")
