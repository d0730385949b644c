"""`opslib status` for a fleet of 50 automations on localcloud, against the calls it cannot avoid.

A private localcloud gets a project of 50 automations on two Cloud Run services (25 jobs
each; five crons, three time zones), set up through the fleet steps: each job's module and
route, one Cloud Build and deploy per service, 50 Scheduler jobs. Then two scenes, each timed:
  one run each   every job run once through Scheduler (`:run`): 50 end lines in the logs;
  a day of runs  localcloud's clock moved `--hours` ahead, so Scheduler fires every run due
                 meanwhile on its cron (hundreds of end lines, the request and app lines too).

Each round, in alternating order:
  status  opslib.fleet.status.status(fleet): one jobs:list, one services:list and one entries:list,
          then the table (cron descriptions, drift, health) on the fleet's shared clients;
  floor   one jobs:list (page_size 500) and one entries:list (status' own filter, one page,
          every entry consumed) with the official clients, one after the other.
Both use clients built before the first round. Goal, in both scenes: status under 2 s and at
most 1.5x the floor (medians). A third line shows status with the cron descriptions' cache
cleared before each call (what a fresh `opslib status` process pays on top of its imports).

    .venv/bin/python benchmarks/fleet_status.py [--jobs 50] [--rounds 15] [--hours 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import yaml

from opslib.fleet import status
from opslib.fleet import steps as fleet_steps
from opslib.fleet.load import Fleet, open_fleet
from opslib.localcloud import control
from opslib.spec.names import scheduler_job as job_path

ROOT = Path(__file__).resolve().parent.parent
CRONS = ("0 9 * * 1-5", "*/30 * * * *", "0 */4 * * *", "0 8 * * 2-6", "0 0 1,15 * *")
ZONES = ("Asia/Seoul", "Asia/Tokyo", "Etc/UTC")
SERVICES = ("status-a", "status-b")
GOAL_SECONDS, GOAL_RATIO = 2.0, 1.5
STATUS, FLOOR, COLD = "status", "floor", "status, cron cache cleared"


def status_job(i: int, base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Job i of this benchmark's fleet: half on each service, five crons, three zones."""
    service = SERVICES[i % 2]
    return f"job-{i:03d}", {
        **base,
        "service": service,
        "service_dir": f"services/{service}",
        "job": {"name": f"job-{i:03d}", "description": f"benchmark job {i}"},
        "schedule": {
            **base["schedule"],
            "cron": CRONS[i % len(CRONS)],
            "time_zone": ZONES[i % len(ZONES)],
        },
        "deploy": {**base["deploy"], "min_instances": 0},
    }


def write_project(
    root: Path, jobs: int, job: Callable[[int, dict[str, Any]], tuple[str, dict]] = status_job
) -> Path:
    """A project folder: service/ and one parameters file per job (`job` gives its name and
    data from the example's)."""
    shutil.copytree(ROOT / "service", root / "service", ignore=shutil.ignore_patterns("__py*"))
    folder = root / "parameters"
    folder.mkdir()
    base = yaml.safe_load((ROOT / "parameters" / "example.yaml").read_text())
    for i in range(jobs):
        name, data = job(i, base)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def deployed(folder: Path) -> Fleet:
    """Steps 1-4 for every job of the folder, through the fleet steps."""
    fleet = open_fleet(folder)
    fleet_steps.write_functions(fleet)
    fleet_steps.patch_endpoints(fleet)
    fleet_steps.deploy(fleet, progress=False)
    fleet_steps.schedule(fleet)
    return fleet


def set_up(folder: Path) -> Fleet:
    """Steps 1-4 for every job, then each job run once through Scheduler."""
    fleet = deployed(folder)
    scheduler = fleet.sessions[0].clients.scheduler
    names = [job_path(s.spec) for s in fleet.sessions]
    before = {n: scheduler.get_job(name=n).last_attempt_time for n in names}
    for name in names:
        scheduler.run_job(name=name)
    wait_attempts(scheduler, names, before)
    return fleet


def wait_attempts(scheduler: Any, names: list[str], before: dict, limit: float = 120) -> None:
    """Until every job's last attempt is newer than it was."""
    deadline = time.monotonic() + limit
    pending = set(names)
    while pending and time.monotonic() < deadline:
        time.sleep(0.2)
        pending = {n for n in pending if scheduler.get_job(name=n).last_attempt_time == before[n]}
    if pending:
        raise SystemExit(f"{len(pending)} job(s) never finished an attempt: {sorted(pending)[:3]}")


def advance(url: str, hours: float) -> None:
    """Move localcloud's clock; it fires every run due meanwhile, in order, before answering."""
    body = json.dumps({"seconds": hours * 3600}).encode()
    request = Request(f"{url}/_localcloud/clock:advance", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urlopen(request, timeout=600) as response:
        response.read()


def floor(fleet: Fleet, since: datetime) -> tuple[int, int]:
    """One jobs:list and one entries:list with the official clients, every item consumed."""
    session = fleet.sessions[0]
    clients, spec = session.clients, session.spec
    parent = f"projects/{spec.project}/locations/{spec.region}"
    jobs = list(clients.scheduler.list_jobs(request={"parent": parent, "page_size": 500}))
    entries = list(
        clients.logging.list_entries(
            resource_names=[f"projects/{spec.project}"],
            filter_=status.log_filter([s.spec for s in fleet.sessions], since),
            order_by="timestamp desc",
            page_size=1000,
            max_results=1000,
        )
    )
    return len(jobs), len(entries)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def cold_status(fleet: Fleet, since: datetime) -> object:
    status.describe.cache_clear()
    return status.status(fleet, since=since)


def measure(fleet: Fleet, rounds: int, since: datetime) -> tuple[dict[str, float], int]:
    """Median seconds of each variant over interleaved rounds, and the end lines read."""
    table = status.status(fleet, since=since)  # warm-up: connections, caches
    assert len(table) == len(fleet.sessions) and table["last_run"].notna().all(), table
    assert status.healthy(table), status.to_text(table)
    _, lines = floor(fleet, since)
    variants = {
        STATUS: lambda: status.status(fleet, since=since),
        FLOOR: lambda: floor(fleet, since),
        COLD: lambda: cold_status(fleet, since),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        for name in order:
            samples[name].append(timed(variants[name]))
        order.reverse()
    return {name: statistics.median(values) for name, values in samples.items()}, lines


def report(scene: str, medians: dict[str, float], lines: int) -> bool:
    """Print one scene's figures; True when it meets both goals."""
    print(f"\n{scene}: {lines} end lines in the window")
    for name, value in medians.items():
        print(f"  {name:<30}{value * 1000:>9.1f} ms")
    ratio, cold = medians[STATUS] / medians[FLOOR], medians[COLD] / medians[FLOOR]
    ok = medians[STATUS] < GOAL_SECONDS and ratio <= GOAL_RATIO
    print(f"  status/floor {ratio:.2f}x (goal <= {GOAL_RATIO}x; cron cache cleared {cold:.2f}x)")
    verdict = "meets the goals" if ok else "MISSES the goals"
    print(f"  status {medians[STATUS]:.3f} s (goal < {GOAL_SECONDS} s): {verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--hours", type=float, default=24, help="of cron runs in the 2nd scene")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "localcloud"
        running = control.start(state, port=0)
        os.environ["OPSLIB_LOCALCLOUD_URL"] = running.url
        try:
            started = time.perf_counter()
            fleet = set_up(write_project(Path(tmp) / "project", args.jobs))
            took = time.perf_counter() - started
            print(f"{args.jobs} automations on 2 services, set up in {took:.1f} s")
            since = datetime.now(UTC) - timedelta(hours=1)
            results.append(("one run each", *measure(fleet, args.rounds, since)))
            advance(running.url, args.hours)
            results.append(
                (f"a day of runs ({args.hours:g} h)", *measure(fleet, args.rounds, since))
            )
        finally:
            control.stop(state)
    print(f"median of {args.rounds} alternating rounds")
    passed = [report(scene, medians, lines) for scene, medians, lines in results]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
