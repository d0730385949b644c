"""The service's retry policy against a real local HTTP server that fails before it succeeds."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from scripts.common import http
from scripts.common.http import RetryPolicy

FAST = RetryPolicy(attempts=3, base_wait=0.05, max_wait=5.0, timeout=5.0)


class Scripted:
    """A server that answers the scripted (status, headers) in order, then 200 forever."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script, self.hits = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(time.monotonic())
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                body = json.dumps({"ok": status == 200, "hit": len(outer.hits)}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/rates"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.hits, self.hits[1:], strict=False)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(*script):
        server = Scripted(list(script))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_429_then_500_then_200_succeeds_on_the_third_attempt(scripted, caplog):
    server = scripted((429, {"Retry-After": "1"}), (500, {}))
    with caplog.at_level(logging.WARNING, logger="scripts.common.http"):
        data = http.get_json(server.url, policy=FAST)
    assert data == {"ok": True, "hit": 3}
    assert len(server.hits) == 3
    first, second = server.gaps()
    assert first >= 1.0, "Retry-After: 1 was not honoured"
    assert second < 1.0, "a 500 without Retry-After uses the (short) exponential backoff"
    retries = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.status for r in retries] == [429, 500]
    assert [r.attempt for r in retries] == [1, 2]


def test_gives_up_after_three_attempts_with_the_last_error(scripted):
    server = scripted((503, {}), (502, {}), (500, {}), (200, {}))
    with pytest.raises(requests.HTTPError) as info:
        http.get_json(server.url, policy=FAST)
    assert info.value.response.status_code == 500
    assert len(server.hits) == 3


def test_backoff_grows_exponentially(scripted):
    server = scripted((500, {}), (500, {}))
    policy = RetryPolicy(attempts=3, base_wait=0.2, max_wait=5.0)
    http.get_json(server.url, policy=policy)
    first, second = server.gaps()
    assert 0.2 <= first < 0.6 and 0.4 <= second < 1.0 and second > first


def test_client_errors_are_not_retried(scripted):
    server = scripted((404, {}))
    with pytest.raises(requests.HTTPError):
        http.get_json(server.url, policy=FAST)
    assert len(server.hits) == 1


def test_retry_after_longer_than_max_wait_fails_at_once(scripted):
    server = scripted((429, {"Retry-After": "3600"}))
    with pytest.raises(requests.HTTPError) as info:
        http.get_json(server.url, policy=FAST)
    assert info.value.response.status_code == 429 and len(server.hits) == 1


def test_retry_after_as_http_date(scripted):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    server = scripted((429, {"Retry-After": when}))
    http.get_json(server.url, policy=FAST)
    assert server.gaps()[0] >= 0.9


def test_connection_refused_is_retried_then_raised():
    closed = Scripted([])
    url = closed.url
    closed.close()
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        http.get_json(url, policy=FAST)
    assert time.monotonic() - started >= 0.1  # two backoff waits happened


def test_default_policy_is_three_attempts():
    assert http.DEFAULT_POLICY.attempts == 3


def test_generated_job_retries_inside_the_running_service(scripted, service_dir, write_params):
    """Step 1's job with a source_url, served by gunicorn, rides out a 429 from its API."""
    from opslib.spec.loader import load_spec
    from opslib.steps.endpoint import serve as localserve
    from opslib.steps.endpoint.patch import patch_endpoint
    from opslib.steps.scaffold import scaffold

    api = scripted((429, {"Retry-After": "1"}))
    spec = load_spec(write_params(job={"source_url": "https://api.example.com/rates"}))
    scaffold(spec, service_dir)
    patch_endpoint(spec, service_dir)
    log = service_dir / "gunicorn.log"
    with localserve.serving(
        service_dir, env={"FX_RATES_SOURCE_URL": api.url}, log_path=log
    ) as base:
        answer = requests.post(f"{base}/run-fx-rates", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["processed"] == 1  # one JSON object without a list: 1 record
    assert len(api.hits) == 2 and api.gaps()[0] >= 1.0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    retry = [e for e in entries if e["severity"] == "WARNING"]
    assert len(retry) == 1 and retry[0]["status"] == 429 and retry[0]["job"] == "fx-rates"


def test_errors_and_retry_logs_carry_no_query_string(scripted, caplog):
    server = scripted((503, {}), (404, {}))
    with (
        caplog.at_level(logging.WARNING, logger="scripts.common.http"),
        pytest.raises(requests.HTTPError) as info,
    ):
        http.get_json(f"{server.url}?api_key=SECRET", policy=FAST)
    assert info.value.response.status_code == 404
    assert "SECRET" not in str(info.value) and "/rates" in str(info.value)
    [retry] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert retry.url == server.url and "SECRET" not in retry.getMessage()


def test_connection_errors_carry_no_query_string():
    closed = Scripted([])
    url = f"http://user:pw-SECRET@127.0.0.1:{closed.server.server_port}/x?key=SECRET"
    closed.close()
    with pytest.raises(requests.ConnectionError) as info:
        http.get_json(url, policy=RetryPolicy(attempts=1))
    assert "SECRET" not in str(info.value), str(info.value)
