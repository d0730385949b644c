"""Cloud Logging on localcloud: the official hand-written client over HTTP, and raw REST for
the wire details (JSON shape, ordering, paging, errors, filter semantics end to end).

The server is shared by the session, so every test tags its entries with a unique value and
filters on it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging
from google.cloud.logging import Resource
from lc import PROJECT, REGION, call, server, unique

from opslib.localcloud import control

PROJECTS = [f"projects/{PROJECT}"]


def log_name(log_id: str, project: str = PROJECT) -> str:
    return f"projects/{project}/logs/{log_id.replace('/', '%2F')}"


def run_resource(service: str) -> dict:
    return {
        "type": "cloud_run_revision",
        "labels": {
            "project_id": PROJECT,
            "service_name": service,
            "revision_name": f"{service}-00001-abc",
            "location": REGION,
            "configuration_name": service,
        },
    }


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write(*entries: dict) -> None:
    status, body = call("/v2/entries:write", {"entries": list(entries)})
    assert (status, body) == (200, {})


def list_entries(filter_: str, **extra) -> tuple[int, dict]:
    return call("/v2/entries:list", {"resourceNames": PROJECTS, "filter": filter_, **extra})


def ids(body: dict) -> list[str]:
    return [e["insertId"] for e in body.get("entries", [])]


def post(url: str, path: str, body: dict) -> tuple[int, str, bytes]:
    """A raw POST that keeps a non-JSON answer: (status, content type, body)."""
    request = Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urlopen(request, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get_content_type(), exc.read()


@pytest.fixture(scope="module")
def client():
    return cloud_logging.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        _use_grpc=False,
        client_options={"api_endpoint": server().url},
    )


# --- the official client ------------------------------------------------------------------------


def test_client_log_struct_and_text_round_trip(client):
    run, service = unique("run"), unique("batch-service")
    resource = Resource(**run_resource(service))
    logger = client.logger(unique("opslib-job"), resource=resource)
    logger.log_struct(
        {"message": "job nightly-sync failed", "job": "nightly-sync", "attempt": 2},
        severity="ERROR",
        labels={"run": run},
        http_request={"requestMethod": "POST", "status": 500, "requestSize": "17"},
    )
    logger.log_text("Listening at: http://0.0.0.0:8080 (1)", labels={"run": run})

    got = list(
        client.list_entries(
            filter_=f'labels.run="{run}"', order_by=cloud_logging.ASCENDING, page_size=10
        )
    )
    assert [type(e).__name__ for e in got] == ["StructEntry", "TextEntry"]
    struct, text = got
    assert struct.log_name == f"projects/{PROJECT}/logs/{logger.name}"
    assert struct.payload == {
        "message": "job nightly-sync failed",
        "job": "nightly-sync",
        "attempt": 2,
    }
    assert struct.severity == "ERROR"
    assert struct.http_request == {"requestMethod": "POST", "status": 500, "requestSize": "17"}
    assert struct.labels == {"run": run}
    assert struct.resource == resource
    assert (text.payload, text.severity) == ("Listening at: http://0.0.0.0:8080 (1)", "DEFAULT")
    assert struct.timestamp.tzinfo is not None and struct.timestamp <= text.timestamp
    assert struct.insert_id and struct.insert_id != text.insert_id

    newest_first = client.list_entries(
        filter_=f'labels.run="{run}"', order_by=cloud_logging.DESCENDING
    )
    assert [e.insert_id for e in newest_first] == [text.insert_id, struct.insert_id]


def test_client_adds_a_24h_window_with_plus0000_offsets(client):
    run = unique("run")
    now = datetime.now(UTC)
    write(
        {
            "logName": log_name("run.googleapis.com/stdout"),
            "resource": run_resource("batch-service"),
            "timestamp": stamp(now - timedelta(hours=25)),
            "insertId": f"{run}-old",
            "textPayload": "yesterday's run",
            "labels": {"run": run},
        },
        {
            "logName": log_name("run.googleapis.com/stdout"),
            "resource": run_resource("batch-service"),
            "timestamp": stamp(now - timedelta(minutes=5)),
            "insertId": f"{run}-new",
            "textPayload": "today's run",
            "labels": {"run": run},
        },
    )
    # No "timestamp" in the filter: the client appends AND timestamp>="<24h ago>+0000".
    assert [e.insert_id for e in client.list_entries(filter_=f'labels.run="{run}"')] == [
        f"{run}-new"
    ]
    # A filter that mentions timestamp is sent as is; `+0000` offsets parse as UTC.
    since = (now - timedelta(hours=26)).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
    both = client.list_entries(filter_=f'labels.run="{run}" AND timestamp>="{since}"')
    assert [e.insert_id for e in both] == [f"{run}-old", f"{run}-new"]
    # The same window over raw REST.
    status, body = list_entries(f'labels.run="{run}"')
    assert status == 200 and ids(body) == [f"{run}-old", f"{run}-new"]


def test_client_severity_filter(client):
    run = unique("run")
    logger = client.logger(unique("opslib-job"), resource=Resource(**run_resource("svc")))
    for severity in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        logger.log_struct({"message": severity.lower()}, severity=severity, labels={"run": run})
    got = client.list_entries(filter_=f'labels.run="{run}" AND severity>=ERROR')
    assert [(e.severity, e.payload["message"]) for e in got] == [
        ("ERROR", "error"),
        ("CRITICAL", "critical"),
    ]


# --- wire shape ---------------------------------------------------------------------------------


def test_entries_come_back_in_json_wire_shape():
    run = unique("run")
    request = {
        "logName": log_name("run.googleapis.com/requests"),
        "resource": run_resource("batch-service"),
        "timestamp": "2026-11-28T04:02:23.514722Z",
        "severity": "ERROR",
        "insertId": f"{run}-req",
        "httpRequest": {
            "requestMethod": "POST",
            "requestUrl": "https://batch-service-abc123-du.a.run.app/jobs/nightly-sync",
            "requestSize": "494",
            "status": 504,
            "responseSize": "713",
            "userAgent": "Google-Cloud-Scheduler",
            "remoteIp": "107.178.196.100",
            "serverIp": "216.239.32.53",
            "latency": "29.999816421s",
            "protocol": "HTTP/1.1",
        },
        "trace": f"projects/{PROJECT}/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "000000000000004a",
        "traceSampled": True,
        "labels": {"instanceId": "00f46b9285a1", "run": run},
        "textPayload": "The request has been terminated because it has reached the maximum "
        "request timeout.",
    }
    # Python REST clients send enums as numbers and may use snake_case top-level names.
    numbered = {
        "log_name": log_name("run.googleapis.com/stderr"),
        "resource": run_resource("batch-service"),
        "timestamp": "2026-11-28T04:02:24Z",
        "severity": 400,
        "insert_id": f"{run}-warn",
        "text_payload": "WARNING: slow upstream",
        "labels": {"run": run},
    }
    write(request, numbered)
    status, body = list_entries(f'labels.run="{run}"', orderBy="timestamp asc")
    assert status == 200
    first, second = body["entries"]
    assert first.pop("receiveTimestamp").endswith("Z")
    assert first == request
    assert isinstance(first["httpRequest"]["status"], int)
    assert isinstance(first["httpRequest"]["requestSize"], str)
    assert second.pop("receiveTimestamp").endswith("Z")
    assert second == {
        "logName": log_name("run.googleapis.com/stderr"),
        "resource": run_resource("batch-service"),
        "timestamp": "2026-11-28T04:02:24Z",
        "severity": "WARNING",
        "insertId": f"{run}-warn",
        "textPayload": "WARNING: slow upstream",
        "labels": {"run": run},
    }
    assert "nextPageToken" not in body


def test_write_fills_timestamp_insert_id_and_default_severity():
    run = unique("run")
    before = call("/_localcloud/clock")[1]["now"]
    write({"logName": log_name("run.googleapis.com/stdout"), "textPayload": run})
    status, body = list_entries(f'textPayload="{run}"')
    assert status == 200
    [entry] = body["entries"]
    assert entry["severity"] == "DEFAULT"
    assert entry["resource"] == {"type": "global"}
    assert entry["timestamp"] == entry["receiveTimestamp"] >= before
    assert len(entry["insertId"]) >= 10


def test_write_canonicalizes_nested_json_as_google_does():
    run = unique("run")
    write(
        {
            "logName": log_name("run.googleapis.com/requests"),
            "insertId": run,
            "httpRequest": {"request_method": "GET", "status": "503", "requestSize": 494},
        }
    )
    [entry] = list_entries(f'insertId="{run}"')[1]["entries"]
    assert entry["httpRequest"] == {"requestMethod": "GET", "status": 503, "requestSize": "494"}


# --- ordering and paging ------------------------------------------------------------------------


def test_order_by_timestamp_with_insert_id_breaking_ties():
    run = unique("run")
    base = datetime.now(UTC) - timedelta(minutes=10)
    same = stamp(base + timedelta(seconds=5))
    write(
        *(
            {
                "logName": log_name("run.googleapis.com/stdout"),
                "timestamp": ts,
                "insertId": f"{run}-{suffix}",
                "textPayload": suffix,
                "labels": {"run": run},
            }
            for ts, suffix in [
                (stamp(base + timedelta(seconds=9)), "d"),
                (same, "c"),
                (stamp(base), "a"),
                (same, "b"),
            ]
        )
    )
    expected = [f"{run}-{s}" for s in "abcd"]
    assert ids(list_entries(f'labels.run="{run}"')[1]) == expected
    assert ids(list_entries(f'labels.run="{run}"', orderBy="timestamp asc")[1]) == expected
    desc = list_entries(f'labels.run="{run}"', orderBy="timestamp desc")[1]
    assert ids(desc) == expected[::-1]


def test_page_size_two_chains_through_every_entry_once():
    run = unique("run")
    base = datetime.now(UTC) - timedelta(minutes=5)
    write(
        *(
            {
                "logName": log_name("run.googleapis.com/stdout"),
                "timestamp": stamp(base + timedelta(seconds=i)),
                "insertId": f"{run}-{i}",
                "jsonPayload": {"message": f"row {i}", "run": run},
            }
            for i in range(5)
        )
    )
    pages, token = [], None
    for _ in range(10):
        extra = {"pageSize": 2, **({"pageToken": token} if token else {})}
        status, body = list_entries(f'jsonPayload.run="{run}"', **extra)
        assert status == 200, body
        pages.append(ids(body))
        token = body.get("nextPageToken")
        if not token:
            break
    assert pages == [[f"{run}-0", f"{run}-1"], [f"{run}-2", f"{run}-3"], [f"{run}-4"]]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"resourceNames": PROJECTS, "pageSize": 1001}, "page_size", "1001"),
        ({"resourceNames": PROJECTS, "pageSize": -1}, "page_size", "-1"),
        ({"resourceNames": PROJECTS, "orderBy": "severity desc"}, "order_by", "severity desc"),
        ({"resourceNames": PROJECTS, "orderBy": "timestamp"}, "order_by", "timestamp"),
        ({"filter": "severity>=ERROR"}, "resource_names", "resource_names"),
        (
            {"resourceNames": PROJECTS, "filter": "sample(insertId, 0.5)"},
            "filter",
            "not supported",
        ),
        (
            {"resourceNames": PROJECTS, "filter": 'severity>=ERROR AND (textPayload:"x"'},
            "filter",
            ")",
        ),
        ({"resourceNames": PROJECTS, "filter": "severity>="}, "filter", "filter"),
        ({"resourceNames": PROJECTS, "filter": "thud=1"}, "filter", "thud"),
    ],
    ids=[
        "page-size-1001",
        "page-size-negative",
        "order-by-severity",
        "order-by-no-direction",
        "no-resource-names",
        "sample-unsupported",
        "unclosed-paren",
        "missing-value",
        "unknown-field",
    ],
)
def test_bad_list_requests_are_invalid_argument(body, field, words):
    status, answer = call("/v2/entries:list", body)
    assert status == 400, answer
    error = answer["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert words in error["message"]
    [violation] = error["details"][0]["fieldViolations"]
    assert violation["field"] == field


def test_unknown_field_message_says_invalid_filter_once():
    status, answer = list_entries("thud=1")
    assert status == 400
    assert answer["error"]["message"].count("Invalid filter:") == 1, answer["error"]["message"]


@pytest.mark.parametrize("size", ["abc", 2.5], ids=["string", "fraction"])
def test_non_integer_page_size_is_invalid_argument(size):
    status, kind, raw = post(
        server().url, "/v2/entries:list", {"resourceNames": PROJECTS, "pageSize": size}
    )
    assert (status, kind) == (400, "application/json"), raw
    assert json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"


@pytest.fixture
def private_localcloud():
    """A localcloud of its own, for a test that leaves state the shared one must not carry."""
    state = Path(tempfile.mkdtemp(prefix="localcloud-private-"))
    try:
        yield state, control.start(state, port=0)
    finally:
        control.stop(state)
        shutil.rmtree(state, ignore_errors=True)


def test_bad_timestamp_is_rejected_and_state_survives_a_restart(private_localcloud):
    state, running = private_localcloud
    good = {"logName": log_name("x"), "textPayload": "kept", "insertId": "good"}
    bad = {"logName": log_name("x"), "textPayload": "a", "timestamp": "garbage"}
    assert post(running.url, "/v2/entries:write", {"entries": [good]})[0] == 200
    status, kind, raw = post(running.url, "/v2/entries:write", {"entries": [bad]})
    control.stop(state)
    try:
        again = control.start(state, port=0, timeout=10)
    except RuntimeError:
        again = None
    # Both facts at once: the answer, and whether localcloud still starts on its state.
    assert (status, kind, again is not None) == (400, "application/json", True), raw
    assert json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    status, _, raw = post(again.url, "/v2/entries:list", {"resourceNames": PROJECTS})
    assert status == 200 and ids(json.loads(raw)) == ["good"]


# --- projects and filter semantics --------------------------------------------------------------


def test_entries_of_another_project_are_never_returned():
    run = unique("run")
    other = "other-project"
    write(
        {
            "logName": log_name("run.googleapis.com/stdout"),
            "insertId": f"{run}-mine",
            "textPayload": run,
        },
        {
            "logName": log_name("run.googleapis.com/stdout", other),
            "insertId": f"{run}-theirs",
            "textPayload": run,
        },
    )
    assert ids(list_entries(f'textPayload="{run}"')[1]) == [f"{run}-mine"]
    status, body = call(
        "/v2/entries:list",
        {"resourceNames": [f"projects/{other}"], "filter": f'textPayload="{run}"'},
    )
    assert status == 200 and ids(body) == [f"{run}-theirs"]
    status, body = call(
        "/v2/entries:list",
        {"resourceNames": [*PROJECTS, f"projects/{other}"], "filter": f'textPayload="{run}"'},
    )
    assert status == 200 and sorted(ids(body)) == [f"{run}-mine", f"{run}-theirs"]


@pytest.fixture(scope="module")
def cloud_run_day():
    """Four realistic Cloud Run entries of one run, 10 s apart, tagged with a unique label."""
    run = unique("run")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    common = {"resource": run_resource("batch-service")}
    entries = [
        {  # a plain stdout line
            **common,
            "logName": log_name("run.googleapis.com/stdout"),
            "textPayload": "Starting gunicorn 23.0.0",
            "severity": "DEFAULT",
        },
        {  # a structured stdout line (severity lifted out of the JSON)
            **common,
            "logName": log_name("run.googleapis.com/stdout"),
            "jsonPayload": {"message": "fx-rates done", "job": "fx-rates", "processed": 42},
            "severity": "INFO",
        },
        {  # a structured error on stderr
            **common,
            "logName": log_name("run.googleapis.com/stderr"),
            "jsonPayload": {"message": "nightly-sync failed", "job": "nightly-sync"},
            "severity": "ERROR",
        },
        {  # the request log of the failed call
            **common,
            "logName": log_name("run.googleapis.com/requests"),
            "httpRequest": {"requestMethod": "POST", "status": 500, "latency": "0.250s"},
            "severity": "ERROR",
        },
    ]
    for i, entry in enumerate(entries):
        entry.update(
            insertId=f"{run}-{i}",
            timestamp=stamp(base + timedelta(seconds=10 * i)),
            labels={"run": run},
        )
    write(*entries)
    return run, base


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("severity>=ERROR", [2, 3]),
        ("severity>=error", [2, 3]),
        ("severity<INFO", [0]),
        ('jsonPayload.job="nightly-sync"', [2]),
        ('jsonPayload.job="NIGHTLY-SYNC"', [2]),
        ('NOT jsonPayload.job="nightly-sync"', [0, 1, 3]),
        ('jsonPayload.job!="nightly-sync"', [1]),
        ("jsonPayload.processed>40", [1]),
        ('log_id("run.googleapis.com/stdout")', [0, 1]),
        (f'logName="{log_name("run.googleapis.com/stderr")}"', [2]),
        ("httpRequest.status>=500", [3]),
        ('textPayload:"gunicorn"', [0]),
        (
            'severity=ERROR OR jsonPayload.job="fx-rates" AND log_id("run.googleapis.com/stdout")',
            [1],
        ),
        ('"nightly-sync"', [2]),
    ],
)
def test_filter_semantics_end_to_end(cloud_run_day, condition, expected):
    run, _ = cloud_run_day
    status, body = list_entries(f'labels.run="{run}" AND ({condition})')
    assert status == 200, body
    assert ids(body) == [f"{run}-{i}" for i in expected]


def test_timestamp_window_with_plus0000_and_z(cloud_run_day, client):
    run, base = cloud_run_day
    start = (base + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    end = stamp(base + timedelta(seconds=30))
    window = f'labels.run="{run}" AND timestamp>="{start}" AND timestamp<"{end}"'
    assert ids(list_entries(window)[1]) == [f"{run}-1", f"{run}-2"]
    got = client.list_entries(filter_=window, order_by=cloud_logging.DESCENDING)
    assert [e.insert_id for e in got] == [f"{run}-2", f"{run}-1"]
