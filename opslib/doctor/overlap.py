"""Doctor: runs skipped because the previous run still held the job (job.overlap), and runs
that overlapped anyway.

A route's guard is a lease (service/scripts/common/lease.py): its lines say `skipped`,
`took_over` (a lease taken over after it expired) or `lease_lost` (a run that outlived its
lease). A Cloud Run job's guard is in its tasks (service/scripts/common/task.py): a task that
finds an earlier execution of the job still running logs `skipped` and does no work; two
executions overlapped when both did work while their run times (the executions' start and
completion) overlapped. Skips are not faults, but many mean the job runs longer than its
interval; an overlap means two runs wrote at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from opslib.doctor.checks import Finding, command, ok, when
from opslib.doctor.facts import Facts
from opslib.spec import names

CHECK = "overlap"
SPACE_OUT = (
    "if that is more than now and then, the job takes longer than its interval: space the cron "
    "out, or set job.overlap: queue to run them one after another"
)


def check_overlap(facts: Facts) -> list[Finding]:
    """Skipped and overlapping runs of this job in the window read (a route's lease)."""
    lines = facts.entries
    if lines.empty:
        return [ok(CHECK, "no run was skipped or overlapped")]
    mine = lines[lines["job"] == facts.spec.job.name]
    skipped = mine[mine["status"] == "skipped"]
    overlapped = mine[mine["status"].isin(["took_over", "lease_lost"])]
    found: list[Finding] = []
    if len(overlapped):
        found.append(
            Finding(
                CHECK,
                "warning",
                f"{len(overlapped)} run(s) of {facts.spec.job.name} overlapped another run",
                f"last at {when(overlapped['timestamp'].max(), facts.zone)}: "
                f"{str(overlapped['message'].iloc[-1])[:200]}",
                "a run outlived its lease (the attempt deadline): raise "
                "schedule.attempt_deadline to cover the slowest run, or make the job faster",
            )
        )
    if len(skipped):
        found.append(_skipped(facts, f"{len(skipped)} run(s)", "run", skipped))
    return found or [ok(CHECK, "no run was skipped or overlapped")]


def _skipped(facts: Facts, count: str, earlier: str, skipped: pd.DataFrame) -> Finding:
    last = skipped.iloc[-1]
    return Finding(
        CHECK,
        "info",
        f"{count} of {facts.spec.job.name} skipped their work: the previous {earlier} was "
        "still going (job.overlap: skip)",
        f"last at {when(last['timestamp'], facts.zone)}: {str(last['message'])[:200]}",
        SPACE_OUT,
    )


def check_execution_overlap(facts: Facts) -> list[Finding]:
    """A Cloud Run job's executions whose tasks skipped their work (the guard's lines), and
    executions that did work while an earlier one still ran."""
    app = facts.app
    mine = app[app["job"] == facts.spec.job.name] if len(app) else app
    skipped = mine[mine["status"] == "skipped"] if len(mine) else mine
    worked = set(mine[mine["status"].isin(("success", "error"))]["execution"].dropna())
    pairs = overlapping(facts.executions or [], worked)
    found = [_overlapped(facts, pairs, mine)] if pairs else []
    if len(skipped):
        count = f"{skipped['execution'].nunique() or len(skipped)} execution(s)"
        found.append(_skipped(facts, count, "execution", skipped))
    executions = len(facts.executions or [])
    return found or [
        ok(
            CHECK,
            "no execution was skipped or overlapped another",
            f"{executions} execution(s) in the window",
        )
    ]


def overlapping(executions: list[Any], worked: set[str]) -> list[tuple[Any, Any]]:
    """(later, earlier) pairs of executions that both did work while both ran."""
    ran = sorted(
        (e for e in executions if e.start_time and names.short(e.name) in worked),
        key=lambda e: e.start_time,
    )
    pairs = []
    for i, later in enumerate(ran):
        for earlier in ran[:i]:
            if not earlier.completion_time or earlier.completion_time > later.start_time:
                pairs.append((later, earlier))
                break
    return pairs


def _overlapped(facts: Facts, pairs: list[tuple[Any, Any]], lines: pd.DataFrame) -> Finding:
    later, earlier = pairs[-1]
    zone, job = facts.zone, facts.spec.job.name
    evidence = (
        f"{names.short(later.name)} started {when(later.start_time, zone)} while "
        f"{names.short(earlier.name)} (started {when(earlier.start_time, zone)}) still ran"
    )
    if facts.spec.job.overlap == "allow":
        return Finding(
            CHECK,
            "info",
            f"{len(pairs)} execution(s) of {job} ran while an earlier one still did "
            "(job.overlap: allow permits it)",
            evidence,
            "if two at once must not happen, set job.overlap: skip (the default) or queue, then "
            f"run {command(facts, 'deploy')}",
        )
    unguarded = lines[lines["message"].fillna("").str.startswith("overlap check unavailable")]
    if len(unguarded):
        evidence += f"; {unguarded['message'].iloc[-1][:200]}"
    return Finding(
        CHECK,
        "warning",
        f"{len(pairs)} execution(s) of {job} did their work while an earlier one still ran, "
        f"though job.overlap is {facts.spec.job.overlap}",
        evidence,
        "the tasks look up the job's executions through the Run Admin API before working: "
        "their identity needs run.executions.list on the job (roles/run.viewer), and "
        f"OPSLIB_OVERLAP comes with step 3: run {command(facts, 'deploy')}",
    )
