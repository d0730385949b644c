"""Logs to a DataFrame: opslib.steps.logs.read_logs against the official client's own iteration.

A private localcloud holds 100,000 Cloud Run entries of one service (job JSON lines, request
logs, plain text lines). Each round reads all of them, in a shuffled order, three ways:
  opslib  read_logs(..., limit=100_000): POST entries:list, then columns built from the JSON
  peer    clients.logging.list_entries(...) -> LogEntry objects -> list of dicts -> DataFrame
  floor   the same POSTs through the same connection, json.loads only, no table
All three make the same 100 calls of 1,000 entries. Wall time includes localcloud answering
(a separate process); client CPU is this process's own time, i.e. the parsing each one adds.
Goal: opslib >= 1.0x the peer (stretch 2.5x).

    .venv/bin/python benchmarks/logs_to_dataframe.py [--entries 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from urllib.request import Request, urlopen

import pandas as pd

from opslib.cloud.clients import Clients
from opslib.localcloud import control
from opslib.spec.model import Spec
from opslib.steps.logs import PAGE_SIZE, logs_filter, read_logs

PROJECT, REGION, SERVICE = "demo-project", "asia-northeast3", "batch-service"
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
SPEC = Spec.model_validate(
    {
        "project": PROJECT,
        "region": REGION,
        "service": SERVICE,
        "job": {"name": "fx-rates"},
        "schedule": {"cron": "0 9 * * 1-5", "time_zone": "Asia/Seoul"},
    }
)
WINDOW = (T0, T0 + timedelta(days=1))


def resource(revision: str) -> dict[str, Any]:
    labels = {"project_id": PROJECT, "service_name": SERVICE, "location": REGION}
    return {
        "type": "cloud_run_revision",
        "labels": {**labels, "revision_name": revision, "configuration_name": SERVICE},
    }


def entry(i: int) -> dict[str, Any]:
    """Entry i of a job run's five: a request log, three JSON lines, a plain text line."""
    run, kind = divmod(i, 5)
    when = (T0 + timedelta(milliseconds=7 * i)).isoformat().replace("+00:00", "Z")
    base = {"timestamp": when, "resource": resource(f"{SERVICE}-{run // 2000 + 1:05d}-abc")}
    log = f"projects/{PROJECT}/logs/run.googleapis.com%2F"
    if kind == 0:
        status = 500 if run % 50 == 0 else 200
        request = {"requestMethod": "POST", "requestUrl": f"https://{SERVICE}.run.app/run-fx"}
        request |= {"status": status, "latency": f"{0.05 + run % 97 / 100:.9f}s"}
        request |= {
            "requestSize": "312",
            "responseSize": "88",
            "userAgent": "Google-Cloud-Scheduler",
        }
        severity = "ERROR" if status >= 500 else "INFO"
        return {**base, "logName": log + "requests", "severity": severity, "httpRequest": request}
    if kind == 4:
        return {**base, "logName": log + "stderr", "textPayload": f"[INFO] worker {run} ok"}
    payload: dict[str, Any] = {"message": f"fx-rates step {kind}", "job": "fx-rates"}
    payload |= {"run_id": f"{run:016x}", "logger": "scripts.batch.fx_rates"}
    if kind == 3:
        payload |= {"processed": run % 300, "errors": 0, "duration_ms": 812, "status": "success"}
    return {**base, "logName": log + "stdout", "severity": "INFO", "jsonPayload": payload}


def seed(url: str, count: int, batch: int = 1000) -> None:
    """Write `count` entries through entries:write, `batch` at a time."""
    for start in range(0, count, batch):
        entries = [entry(i) for i in range(start, min(count, start + batch))]
        body = json.dumps({"entries": entries}).encode()
        request = Request(f"{url}/v2/entries:write", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        with urlopen(request, timeout=60) as response:
            response.read()


def opslib_read(clients: Clients, limit: int) -> int:
    return len(read_logs(clients, SPEC, *WINDOW, limit=limit))


def peer_read(clients: Clients, limit: int) -> int:
    """What one writes with the official client: iterate LogEntry objects, collect dicts."""
    rows, logs = [], {}
    entries = clients.logging.list_entries(
        filter_=logs_filter(SPEC, *WINDOW),
        page_size=PAGE_SIZE,
        order_by="timestamp asc",
        max_results=limit,
    )
    for e in entries:
        payload = e.payload if isinstance(e.payload, dict) else {}
        text = e.payload if isinstance(e.payload, str) else None
        http = e.http_request or {}
        if e.log_name not in logs:
            logs[e.log_name] = unquote(e.log_name.partition("/logs/")[2])
        request_line = f"{http.get('requestMethod')} {http.get('requestUrl')} {http.get('status')}"
        latency = http.get("latency")
        rows.append(
            {
                "timestamp": e.timestamp,
                "severity": e.severity,
                "message": payload.get("message", text or (request_line if http else None)),
                "job": payload.get("job"),
                "processed": payload.get("processed"),
                "errors": payload.get("errors"),
                "status": payload.get("status", str(http["status"]) if http else None),
                "latency": float(latency[:-1]) if latency else None,
                "log": logs[e.log_name],
                "revision": e.resource.labels.get("revision_name") if e.resource else None,
            }
        )
    return len(pd.DataFrame(rows))


def floor_read(clients: Clients, limit: int) -> int:
    """The same calls, only the HTTP round trip and json.loads: nothing cheaper reads them."""
    body = {
        "resourceNames": [f"projects/{PROJECT}"],
        "filter": logs_filter(SPEC, *WINDOW),
        "orderBy": "timestamp asc",
        "pageSize": PAGE_SIZE,
    }
    connection, count = clients.logging._connection, 0
    while True:
        page = connection.api_request(method="POST", path="/entries:list", data=body)
        count += len(page.get("entries") or ())
        if not page.get("nextPageToken") or count >= limit:
            return count
        body = {**body, "pageToken": page["nextPageToken"]}


def timed(read: Callable[[Clients, int], int], clients: Clients, limit: int) -> tuple[float, ...]:
    """(wall seconds, client CPU seconds, rows) of one full read."""
    wall, cpu = time.perf_counter(), time.process_time()
    rows = read(clients, limit)
    return time.perf_counter() - wall, time.process_time() - cpu, rows


def report(samples: dict[str, list[tuple[float, ...]]], count: int, rounds: int) -> None:
    print(f"{count:,} Cloud Run entries to a DataFrame, median of {rounds} alternating rounds")
    print(f"{'variant':<40}{'wall s':>8}{'entries/s':>11}{'client CPU s':>14}{'entries/s':>11}")
    medians = {}
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        medians[name] = (wall, cpu)
        print(f"{name:<40}{wall:>8.2f}{count / wall:>11,.0f}{cpu:>14.2f}{count / cpu:>11,.0f}")
    ours, peer = medians[OPSLIB], medians[PEER]
    for label, ratio in (("wall", peer[0] / ours[0]), ("client CPU", peer[1] / ours[1])):
        goal = "meets" if ratio >= 1.0 else "misses"
        stretch = "meets" if ratio >= 2.5 else "misses"
        print(f"opslib/peer, {label}: {ratio:.2f}x ({goal} >= 1.0x, {stretch} stretch 2.5x)")


OPSLIB = "opslib read_logs"
PEER = "peer: client list_entries -> dicts"
FLOOR = "floor: POST + json.loads only"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = {OPSLIB: opslib_read, PEER: peer_read, FLOOR: floor_read}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "localcloud"
        running = control.start(state, port=0)
        try:
            seed(running.url, args.entries)
            clients = Clients("local", PROJECT, running.url)
            for read in variants.values():  # warm-up: imports, connections (one page each)
                assert read(clients, PAGE_SIZE) == PAGE_SIZE
            samples: dict[str, list[tuple[float, ...]]] = {name: [] for name in variants}
            order = list(variants)
            for _ in range(args.rounds):
                random.Random(len(samples[OPSLIB])).shuffle(order)
                for name in order:
                    samples[name].append(timed(variants[name], clients, args.entries))
        finally:
            control.stop(state)
    report(samples, args.entries, args.rounds)


if __name__ == "__main__":
    main()
