"""Overlap guard cost: a run under the GCS lease (acquire + release) vs the same run without it.

The run is the route's frame around a trivial job (`job_run`, a little work); the guarded one adds
`lease.guard(run, 900)`, i.e. a conditional create and a conditional delete over the GCS JSON
API of a localcloud this script starts and stops, with the metadata-server token as an instance
gets it. Runs are interleaved (the order flips every round) so machine noise hits both alike.
Target (issue 11): the lease adds under 30 ms p50 per run; exit 1 if it does not.

    .venv/bin/python benchmarks/lease_overhead.py [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))

from opslib.localcloud import control  # noqa: E402
from scripts.common import lease  # noqa: E402  (the service's own module, as deployed)
from scripts.common.logs import job_run  # noqa: E402

TARGET_MS = 30.0
JOB = "bench-job"
log = logging.getLogger("bench")


def work() -> int:
    """The trivial job both variants run."""
    return sum(range(1000))


def plain() -> None:
    with job_run(JOB, log):
        work()


def guarded() -> None:
    with job_run(JOB, log) as run, lease.guard(run, 900) as held:
        assert not held.skipped and held.off is None, held
        work()


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def point_at(url: str, port: int) -> None:
    """The environment localcloud gives an instance, plus a lease bucket made for the run."""
    bucket = "bench-leases"
    body = json.dumps({"name": bucket}).encode()
    request = Request(f"{url}/storage/v1/b?project=bench", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urlopen(request, timeout=10):
        pass
    os.environ.update(
        {
            "STORAGE_EMULATOR_HOST": url,
            "GCE_METADATA_HOST": f"127.0.0.1:{port}",
            lease.BUCKET_ENV: bucket,
        }
    )


def measure(runs: int) -> tuple[list[float], list[float]]:
    for _ in range(20):  # warm: token, keep-alive connection, code paths
        plain()
        guarded()
    without, with_lease = [], []
    for i in range(runs):
        pair = (plain, guarded) if i % 2 else (guarded, plain)
        for run in pair:
            (with_lease if run is guarded else without).append(timed(run))
    return without, with_lease


def report(without: list[float], with_lease: list[float]) -> float:
    print(f"{len(without)} runs each, interleaved; lease = create (ifGenerationMatch=0) + delete")
    print(f"{'run':<28}{'p50 ms':>9}{'p95 ms':>9}")
    for name, values in (("without the guard", without), ("with the lease", with_lease)):
        p95 = statistics.quantiles(values, n=20)[18]
        print(f"{name:<28}{statistics.median(values) * 1000:>9.3f}{p95 * 1000:>9.3f}")
    overhead = (statistics.median(with_lease) - statistics.median(without)) * 1000
    p95_over = statistics.quantiles(with_lease, n=20)[18] - statistics.quantiles(without, n=20)[18]
    print(f"lease overhead: p50 {overhead:.3f} ms, p95 {p95_over * 1000:.3f} ms")
    print(f"{'meets' if overhead < TARGET_MS else 'misses'} the < {TARGET_MS:.0f} ms p50 target")
    return overhead


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="localcloud-lease-bench-"))
    running = control.start(state, port=0)
    try:
        point_at(running.url, running.port)
        without, with_lease = measure(args.runs)
    finally:
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)
    return 0 if report(without, with_lease) < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
