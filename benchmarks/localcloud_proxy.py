"""Latency of a request through localcloud's Cloud Run front vs straight to the same gunicorn.

The front does what Cloud Run's does (ID-token check, traffic split, timeout, request log);
its overhead is the difference of the two p50s, measured in the same run with interleaved
batches over keep-alive connections. Target (issue 3): <= 0.5 ms p50 overhead.

    .venv/bin/python benchmarks/localcloud_proxy.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import lc  # noqa: E402  (the tests' helpers: build, deploy through the official clients)
from google.cloud import run_v2  # noqa: E402

from opslib.localcloud import control  # noqa: E402

SA = f"scheduler@{lc.PROJECT}.iam.gserviceaccount.com"


def timed(port: int, path: str, headers: dict[str, str], count: int) -> list[float]:
    """Per-request seconds for `count` GETs on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        samples.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="localcloud-bench-"))
    running = control.start(state, port=0)
    lc._SERVER["running"] = running
    try:
        folder = Path(tempfile.mkdtemp()) / "service"
        shutil.copytree(ROOT / "service", folder, ignore=shutil.ignore_patterns("__pycache__"))
        image = lc.image_name("bench", "v1")
        lc.build(folder, image)
        run = run_v2.ServicesClient(**lc.client_kwargs())
        service = run.create_service(
            parent=lc.PARENT,
            service_id="bench",
            service={
                "template": {"containers": [{"image": image}], "scaling": {"min_instance_count": 1}}
            },
        ).result(timeout=120)
        policy = run.get_iam_policy(request={"resource": service.name})
        policy.bindings.add(role="roles/run.invoker", members=[f"serviceAccount:{SA}"])
        run.set_iam_policy(request={"resource": service.name, "policy": policy})
        with urlopen(Request(f"{running.url}/_localcloud/instances")) as response:
            direct_port = json.loads(response.read())["instances"][0]["port"]
        front_port = int(service.uri.rsplit(":", 1)[1])
        auth = {"Authorization": f"Bearer {lc.token(service.uri, SA)}"}
        timed(front_port, "/health", auth, 200)  # warm both paths
        timed(direct_port, "/health", {}, 200)
        front: list[float] = []
        direct: list[float] = []
        batch = max(args.requests // 10, 1)
        for _ in range(10):
            direct += timed(direct_port, "/health", {}, batch)
            front += timed(front_port, "/health", auth, batch)
    finally:
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)
    print(f"GET /health, {len(front)} requests each, keep-alive, interleaved batches of {batch}")
    print(f"{'path':<34}{'p50 ms':>9}{'p99 ms':>9}")
    for name, values in (
        ("straight to gunicorn (floor)", direct),
        ("through localcloud's front", front),
    ):
        q = statistics.quantiles(values, n=100)
        print(f"{name:<34}{statistics.median(values) * 1000:>9.3f}{q[98] * 1000:>9.3f}")
    overhead = (statistics.median(front) - statistics.median(direct)) * 1000
    ratio = statistics.median(front) / statistics.median(direct)
    verdict = "meets" if overhead <= 0.5 else "misses"
    print(f"front overhead p50: {overhead:.3f} ms ({ratio:.2f}x the floor)")
    print(f"{verdict} the <= 0.5 ms target")


if __name__ == "__main__":
    main()
