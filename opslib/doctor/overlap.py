"""Doctor: runs skipped because the previous run still held the job (job.overlap), and runs
that overlapped anyway (a lease taken over after it expired, or a run that outlived its lease).

The guard's log lines say which (service/scripts/common/lease.py, task.py): `skipped`,
`took_over`, `lease_lost`. Skips are not faults, but many mean the job runs longer than its
interval; an overlap means two runs wrote at once.
"""

from __future__ import annotations

from opslib.doctor.checks import Finding, ok, when
from opslib.doctor.facts import Facts


def check_overlap(facts: Facts) -> list[Finding]:
    """Skipped and overlapping runs of this job in the window read."""
    lines = facts.entries
    if lines.empty:
        return [ok("overlap", "no run was skipped or overlapped")]
    mine = lines[lines["job"] == facts.spec.job.name]
    skipped = mine[mine["status"] == "skipped"]
    overlapped = mine[mine["status"].isin(["took_over", "lease_lost"])]
    found: list[Finding] = []
    if len(overlapped):
        found.append(
            Finding(
                "overlap",
                "warning",
                f"{len(overlapped)} run(s) of {facts.spec.job.name} overlapped another run",
                f"last at {when(overlapped['timestamp'].max(), facts.zone)}: "
                f"{str(overlapped['message'].iloc[-1])[:200]}",
                "a run outlived its lease (the attempt deadline): raise "
                "schedule.attempt_deadline to cover the slowest run, or make the job faster",
            )
        )
    if len(skipped):
        found.append(
            Finding(
                "overlap",
                "info",
                f"{len(skipped)} run(s) of {facts.spec.job.name} were skipped: the previous "
                "run was still going (job.overlap: skip)",
                f"last at {when(skipped['timestamp'].max(), facts.zone)}",
                "if that is more than now and then, the job takes longer than its interval: "
                "space the cron out, or set job.overlap: queue to run them one after another",
            )
        )
    return found or [ok("overlap", "no run was skipped or overlapped")]
