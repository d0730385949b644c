"""A day of localcloud at `*/5` for 10 automations, with one deploy per simulated hour.

A private localcloud gets 10 route jobs on one service (steps 1-4 through the fleet steps),
each on `*/5 * * * *`. Then localcloud's clock moves ahead one hour at a time
(`clock:advance` fires every run due meanwhile, each a real HTTP call to a real gunicorn), and
during each hour a deploy rolls out a new revision of the service (an env change through the
official Run client: a real instance start and a traffic switch while the runs go on).

Reported, from what localcloud recorded (Scheduler's AttemptFinished entries and the job's own
log lines, read back with the official Logging client):
  runs expected   10 jobs x 12 an hour x the hours;
  runs made       attempts that finished OK; runs lost = expected - made (goal 0);
  log lines lost  the job's lines a run prints (counted on a warm-up run) x runs made, minus
                  the lines found (goal 0);
  RSS and fds     of the localcloud server at the start and the end, and its peak RSS. Goals:
                  open fds grow by at most FD_BOUND; RSS grows by at most RSS_PER_ENTRY bytes
                  per log entry kept (localcloud keeps every entry in memory, as the Logging
                  API keeps them for their retention; nothing else may grow).
The floor: the same hour of runs with no deploy, timed in the same run; the ratio says what a
rollout during the runs costs.

    .venv/bin/python benchmarks/soak.py [--hours 24] [--jobs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fleet_status import advance, deployed, wait_attempts, write_project
from google.cloud import run_v2

from opslib.fleet.load import Fleet
from opslib.localcloud import control
from opslib.spec import names

ROOT = Path(__file__).resolve().parent.parent
CRON = "*/5 * * * *"
RUNS_PER_HOUR = 12
FD_BOUND = 20
RSS_PER_ENTRY = 4096
SERVICE = "soak-service"


def soak_job(i: int, base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return f"soak-{i:02d}", {
        **base,
        "service": SERVICE,
        "service_dir": f"services/{SERVICE}",
        "job": {"name": f"soak-{i:02d}", "description": f"soak job {i}"},
        "schedule": {**base["schedule"], "cron": CRON, "time_zone": "Etc/UTC"},
        "deploy": {**base["deploy"], "min_instances": 0},
    }


def process(pid: int) -> dict[str, int]:
    """The server's resident and peak resident memory (bytes) and its open descriptors."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def redeploy(fleet: Fleet, serial: int) -> float:
    """A new revision (one env value changed) rolled out while runs go on; seconds it took."""
    session = fleet.sessions[0]
    run = session.clients.run
    service = run.get_service(name=names.service(session.spec))
    env = [e for e in service.template.containers[0].env if e.name != "SOAK_DEPLOY"]
    env.append(run_v2.EnvVar(name="SOAK_DEPLOY", value=str(serial)))
    del service.template.containers[0].env[:]
    service.template.containers[0].env.extend(env)
    started = time.perf_counter()
    run.update_service(service=service).result(timeout=300)
    return time.perf_counter() - started


def lines_of(fleet: Fleet, log_filter: str) -> list[object]:
    session = fleet.sessions[0]
    return list(
        session.clients.logging.list_entries(
            resource_names=[f"projects/{session.spec.project}"],
            filter_=log_filter,
            page_size=1000,
        )
    )


def finished_ok(fleet: Fleet) -> int:
    """Attempts that ended OK: AttemptFinished entries without a status."""
    found = lines_of(fleet, 'log_id("cloudscheduler.googleapis.com/executions")')
    return sum(
        1
        for e in found
        if isinstance(e.payload, dict)
        and str(e.payload.get("@type", "")).endswith("AttemptFinished")
        and not e.payload.get("status")
    )


def job_lines(fleet: Fleet) -> tuple[int, int]:
    """The job's own log lines (those that carry a run_id) and how many runs wrote them."""
    service = fleet.sessions[0].spec.service
    found = lines_of(
        fleet,
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" '
        'AND log_id("run.googleapis.com/stdout")',
    )
    runs = [
        e.payload["run_id"] for e in found if isinstance(e.payload, dict) and "run_id" in e.payload
    ]
    return len(runs), len(set(runs))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--floor-hours", type=int, default=3, help="hours without deploys")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "localcloud"
        running = control.start(state, port=0)
        os.environ["OPSLIB_LOCALCLOUD_URL"] = running.url
        try:
            return soak(
                running, deployed(write_project(Path(tmp) / "project", args.jobs, soak_job)), args
            )
        finally:
            control.stop(state)


def soak(running: control.Running, fleet: Fleet, args: argparse.Namespace) -> int:
    scheduler = fleet.sessions[0].clients.scheduler
    jobs = [names.scheduler_job(s.spec) for s in fleet.sessions]
    before = {n: scheduler.get_job(name=n).last_attempt_time for n in jobs}
    for name in jobs:  # a warm-up run each: the job's own lines per run
        scheduler.run_job(name=name)
    wait_attempts(scheduler, jobs, before)
    time.sleep(1.5)  # localcloud writes its logs to the state file every second
    base_ok, (base_lines, base_runs) = finished_ok(fleet), job_lines(fleet)
    per_run = base_lines / base_runs
    start = process(running.pid)

    floor = [_timed(lambda: advance(running.url, 1)) for _ in range(args.floor_hours)]
    hours, deploys = [], []
    for hour in range(args.hours):
        deployer = threading.Thread(target=lambda h=hour: deploys.append(redeploy(fleet, h)))
        deployer.start()
        hours.append(_timed(lambda: advance(running.url, 1)))
        deployer.join()
    time.sleep(1.5)
    end = process(running.pid)

    simulated = args.floor_hours + args.hours
    expected = len(jobs) * RUNS_PER_HOUR * simulated
    made = finished_ok(fleet) - base_ok
    lines, runs = job_lines(fleet)
    lines, runs = lines - base_lines, runs - base_runs
    lost_lines = round(per_run * made) - lines
    entries = len(lines_of(fleet, 'timestamp>="1970-01-01T00:00:00Z"'))
    rss_growth, fd_growth = end["VmRSS"] - start["VmRSS"], end["fds"] - start["fds"]
    rss_bound = RSS_PER_ENTRY * entries
    print(f"{len(jobs)} jobs on {CRON}, {simulated} simulated hours ({args.hours} with a deploy)")
    print(f"  runs expected {expected}, made {made}, lost {expected - made} (goal 0)")
    print(
        f"  job log lines {lines} from {runs} runs ({per_run:g} a run), lost {lost_lines} (goal 0)"
    )
    print(f"  deploys {len(deploys)}, median rollout {statistics.median(deploys):.2f} s")
    floor_hour, hour_median = statistics.median(floor), statistics.median(hours)
    print(
        f"  wall time per simulated hour: {hour_median:.2f} s with a deploy, "
        f"{floor_hour:.2f} s without (floor): {hour_median / floor_hour:.2f}x"
    )
    print(
        f"  server RSS {start['VmRSS'] / 2**20:.1f} -> {end['VmRSS'] / 2**20:.1f} MiB "
        f"(peak {end['VmHWM'] / 2**20:.1f} MiB), {entries} log entries kept: growth "
        f"{rss_growth / 2**20:.1f} MiB, bound {rss_bound / 2**20:.1f} MiB "
        f"({RSS_PER_ENTRY} B an entry)"
    )
    print(f"  server fds {start['fds']} -> {end['fds']} (bound +{FD_BOUND})")
    ok = (
        made == expected == runs
        and lost_lines == 0
        and fd_growth <= FD_BOUND
        and rss_growth <= rss_bound
        and len(deploys) == args.hours
    )
    print("meets the goals" if ok else "MISSES the goals")
    return 0 if ok else 1


def _timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
