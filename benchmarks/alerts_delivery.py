"""Time from a failing run's error line to the webhook delivery, on localcloud, for 10 and 100
watched automations (issue 20; target: p50 and p95 under 2 s, whatever the number watched).

Each automation gets its alerts from step `alerts` (a webhook channel whose URL is in Secret
Manager, log-match policies for failed and overrun) through the official Monitoring client.
A sample writes one ERROR line of a run, as the service logs it, through Logging's
entries:write and waits for the POST to reach a receiver on 127.0.0.1. The floor, measured in
the same run: the same entries:write round trip with a line no policy matches, plus a direct
POST of the same JSON to the same receiver. The ratio is delivery p50 over floor p50.

    .venv/bin/python benchmarks/alerts_delivery.py [--samples 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import lc  # noqa: E402  (the tests' helpers: one localcloud, raw calls)

from opslib.cloud.clients import Clients  # noqa: E402
from opslib.localcloud import control  # noqa: E402
from opslib.spec.model import Spec  # noqa: E402
from opslib.steps import alerts  # noqa: E402

TARGET = 2.0  # seconds


class Receiver(ThreadingHTTPServer):
    """Keeps the perf_counter time of each POST it receives."""

    def __init__(self) -> None:
        self.got: list[float] = []
        self.event = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.got.append(time.perf_counter())
                owner.event.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def post(url: str, body: dict) -> None:
    data = json.dumps(body).encode()
    request = Request(url, data=data, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as answer:
        answer.read()


def error_line(spec: Spec, matching: bool) -> dict:
    """One ERROR line of a run of `spec`'s job, as Cloud Run records the service's stdout."""
    labels = {"service_name": spec.service, "location": spec.region, "project_id": spec.project}
    return {
        "logName": f"projects/{spec.project}/logs/run.googleapis.com%2Fstdout",
        "resource": {"type": "cloud_run_revision", "labels": labels},
        "entries": [
            {
                "severity": "ERROR",
                "jsonPayload": {
                    "message": f"{spec.job.name} failed: RuntimeError: rates API said no",
                    "job": spec.job.name if matching else "not-watched",
                    "run_id": lc.unique("run"),
                },
            }
        ],
    }


def specs(count: int, secret: str) -> list[Spec]:
    data = yaml.safe_load((ROOT / "parameters" / "example.yaml").read_text())
    data["alerts"] = {"channels": [{"webhook": secret}]}
    return [
        Spec.model_validate({**data, "job": {**data["job"], "name": lc.unique(f"b{count}")}})
        for _ in range(count)
    ]


def measure(url: str, clients: Clients, hook: Receiver, watched: list[Spec], samples: int):
    """Delivery seconds and floor seconds, `samples` of each, interleaved."""
    for spec in watched:
        alerts.apply(spec, clients, "opslib doctor parameters/bench.yaml")
    delivery, floor = [], []
    for index in range(samples):
        spec = watched[index % len(watched)]
        if index and index % len(watched) == 0:  # every incident closes (autoClose 30 min)
            post(f"{url}/_localcloud/clock:advance", {"seconds": 1801})
        hook.event.clear()
        started = time.perf_counter()
        post(f"{url}/v2/entries:write", error_line(spec, True))
        if not hook.event.wait(10):
            raise SystemExit(f"no delivery for {spec.job.name}")
        delivery.append(hook.got[-1] - started)
        started = time.perf_counter()
        post(f"{url}/v2/entries:write", error_line(spec, False))
        post(f"http://127.0.0.1:{hook.server_port}/floor", {"incident": {"summary": "x" * 1500}})
        floor.append(time.perf_counter() - started)
    return delivery, floor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="localcloud-bench-"))
    running = control.start(state, port=0)
    lc._SERVER["running"] = running
    hook = Receiver()
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    results = {}
    try:
        clients = Clients("local", lc.PROJECT, running.url)
        secret = lc.unique("bench-hook")
        clients.secrets.create_secret(
            parent=f"projects/{lc.PROJECT}",
            secret_id=secret,
            secret={"replication": {"automatic": {}}},
        )
        url = f"http://127.0.0.1:{hook.server_port}/hook"
        clients.secrets.add_secret_version(
            parent=f"projects/{lc.PROJECT}/secrets/{secret}", payload={"data": url.encode()}
        )
        for count in (10, 100):
            results[count] = measure(running.url, clients, hook, specs(count, secret), args.samples)
    finally:
        hook.shutdown()
        hook.server_close()
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)
    print(f"error line -> webhook delivery on localcloud, {args.samples} samples per row")
    print(f"{'watched':>8}{'p50 ms':>10}{'p95 ms':>10}{'floor p50 ms':>14}{'ratio':>8}")
    worst = 0.0
    for count, (delivery, floor) in results.items():
        p95 = statistics.quantiles(delivery, n=20)[18]
        p50, f50 = statistics.median(delivery), statistics.median(floor)
        worst = max(worst, p95)
        print(
            f"{count:>8}{p50 * 1000:>10.1f}{p95 * 1000:>10.1f}{f50 * 1000:>14.1f}{p50 / f50:>8.2f}"
        )
    verdict = "meets" if worst < TARGET else "misses"
    print(f"{verdict} the < {TARGET:g} s target (p95 at most {worst * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
