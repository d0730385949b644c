"""opslib.steps.logs against the session's real localcloud: the filter, the DataFrame, paging.

Every test writes its entries for its own service name, so the shared log store does not leak
between tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import lc
import numpy as np
import pandas as pd
import pytest

from opslib.cloud.clients import Clients
from opslib.core.errors import BadInput
from opslib.spec.model import Spec
from opslib.steps.logs import (
    COLUMNS,
    entries_frame,
    logs_filter,
    parse_freshness,
    read_logs,
    recent,
)

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(minutes=20))
NANOS = "2026-03-02T00:00:03.500000001Z"  # Cloud Logging keeps nanoseconds
TIMEOUT_TEXT = "The request has been terminated because it has reached the maximum request timeout."


def make_spec(service: str) -> Spec:
    return Spec.model_validate(
        {
            "project": lc.PROJECT,
            "region": lc.REGION,
            "service": service,
            "job": {"name": "fx-rates"},
            "schedule": {"cron": "0 9 * * 1-5", "time_zone": "Asia/Seoul"},
        }
    )


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> Spec:
    monkeypatch.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)
    return make_spec(lc.unique("logs"))


@pytest.fixture
def clients(spec: Spec) -> Clients:
    return lc.clients(spec.project)


def resource(service: str, revision: str = "00001-abc") -> dict:
    return {
        "type": "cloud_run_revision",
        "labels": {
            "project_id": lc.PROJECT,
            "service_name": service,
            "revision_name": f"{service}-{revision}",
            "location": lc.REGION,
            "configuration_name": service,
        },
    }


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def stdout(service: str, seconds: float, severity: str, **payload: object) -> dict:
    """A JSON line from service/scripts/common/logs.py as Cloud Run stores it."""
    return {
        "logName": f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Fstdout",
        "resource": resource(service),
        "timestamp": at(seconds),
        "severity": severity,
        "labels": {"instanceId": "0069c7a9"},
        "jsonPayload": {"logger": "batch", "run_id": "5f0c2a9e11d04b7a", **payload},
    }


def request_log(service: str, seconds: float, status: int, latency: str, **extra: object) -> dict:
    """A request log as run_front writes it (and Cloud Run does)."""
    return {
        "logName": f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Frequests",
        "resource": resource(service, "00002-xyz"),
        "timestamp": at(seconds),
        "severity": "ERROR" if status >= 500 else "INFO",
        "httpRequest": {
            "requestMethod": "POST",
            "requestUrl": f"https://{service}-abc-du.a.run.app/run-fx-rates",
            "requestSize": "312",
            "status": status,
            "responseSize": "88",
            "latency": latency,
            "protocol": "HTTP/1.1",
        },
        **extra,
    }


def write(entries: list[dict]) -> None:
    assert lc.call("/v2/entries:write", {"entries": entries}) == (200, {})


def realistic(service: str) -> list[dict]:
    """One job run's logs, written out of order, plus entries the filter must leave out."""
    text = {
        "logName": f"projects/{lc.PROJECT}/logs/run.googleapis.com%2Fstderr",
        "resource": resource(service),
        "timestamp": at(2.5),
        "textPayload": "[INFO] Booting worker with pid: 12",
    }
    served = request_log(service, 3.5, 200, "0.912345678s")
    served["timestamp"] = NANOS
    return [
        served,
        stdout(service, 1, "INFO", message="fx-rates started", job="fx-rates"),
        text,
        stdout(
            service,
            3.25,
            "INFO",
            message="fx-rates finished: {'processed': 42}",
            job="fx-rates",
            processed=42,
            errors=0,
            duration_ms=812,
            status="success",
        ),
        stdout(
            service,
            4,
            "ERROR",
            message="fx-rates failed: HTTPError: 503",
            job="fx-rates",
            errors=1,
            duration_ms=95,
            status="error",
        ),
        request_log(service, 904, 504, "900.000512s", textPayload=TIMEOUT_TEXT),
        stdout("other-service", 2, "INFO", message="not mine", job="fx-rates", processed=1),
        stdout(service, -60, "INFO", message="before the window", job="fx-rates"),
        stdout(service, 3600, "INFO", message="after the window", job="fx-rates"),
    ]


def frame(columns: dict[str, list]) -> pd.DataFrame:
    """The expected DataFrame, with read_logs' dtypes."""
    df = pd.DataFrame(columns, columns=list(COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    return df.astype(
        {
            "timestamp": "datetime64[ns, UTC]",
            "processed": "Int64",
            "errors": "Int64",
            "latency": "float64",
            **dict.fromkeys(
                ("severity", "message", "job", "status", "log", "revision", "run_id"), "str"
            ),
        }
    )


def test_read_logs_builds_the_exact_frame(spec: Spec, clients: Clients) -> None:
    write(realistic(spec.service))
    url = f"https://{spec.service}-abc-du.a.run.app/run-fx-rates"
    rev1, rev2 = f"{spec.service}-00001-abc", f"{spec.service}-00002-xyz"
    out, req = "run.googleapis.com/stdout", "run.googleapis.com/requests"
    na = None
    expected = frame(
        {
            "timestamp": [at(1), at(2.5), at(3.25), NANOS, at(4), at(904)],
            "severity": ["INFO", "DEFAULT", "INFO", "INFO", "ERROR", "ERROR"],
            "message": [
                "fx-rates started",
                "[INFO] Booting worker with pid: 12",
                "fx-rates finished: {'processed': 42}",
                f"POST {url} 200",
                "fx-rates failed: HTTPError: 503",
                TIMEOUT_TEXT,
            ],
            "job": ["fx-rates", na, "fx-rates", na, "fx-rates", na],
            "processed": [na, na, 42, na, na, na],
            "errors": [na, na, 0, na, 1, na],
            "status": [na, na, "success", "200", "error", "504"],
            "latency": [np.nan, np.nan, np.nan, 0.912345678, np.nan, 900.000512],
            "log": [out, "run.googleapis.com/stderr", out, req, out, req],
            "revision": [rev1, rev1, rev1, rev2, rev1, rev2],
            "run_id": ["5f0c2a9e11d04b7a", na, "5f0c2a9e11d04b7a", na, "5f0c2a9e11d04b7a", na],
        }
    )

    df = read_logs(clients, spec, *WINDOW, limit=100)

    assert list(df.columns) == list(COLUMNS)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(df, expected)


def test_errors_only_keeps_error_and_worse(spec: Spec, clients: Clients) -> None:
    write(realistic(spec.service))

    df = read_logs(clients, spec, *WINDOW, errors_only=True)

    assert df["severity"].tolist() == ["ERROR", "ERROR"]
    assert df["status"].tolist() == ["error", "504"]
    assert df["message"].tolist() == ["fx-rates failed: HTTPError: 503", TIMEOUT_TEXT]


def test_extra_is_anded_in_parentheses(spec: Spec, clients: Clients) -> None:
    write(realistic(spec.service))

    df = read_logs(
        clients, spec, *WINDOW, extra='jsonPayload.status="error" OR httpRequest.status=200'
    )

    assert df["status"].tolist() == ["200", "error"]


def test_filter_string_for_a_known_input() -> None:
    spec = make_spec("batch-service")
    seoul = timezone(timedelta(hours=9))
    since = datetime(2026, 3, 2, 9, 0, tzinfo=seoul)
    until = datetime(2026, 3, 2, 0, 10, 30, 250000, tzinfo=UTC)

    text = logs_filter(spec, since, until, errors_only=True, extra='jsonPayload.job="fx-rates"')

    assert text == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="batch-service" '
        'AND timestamp>="2026-03-02T00:00:00Z" AND timestamp<="2026-03-02T00:10:30.250000Z" '
        'AND severity>=ERROR AND (jsonPayload.job="fx-rates")'
    )
    assert logs_filter(spec, since) == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="batch-service" '
        'AND timestamp>="2026-03-02T00:00:00Z"'
    )


def test_extra_with_a_trailing_comment_keeps_its_parenthesis(spec: Spec, clients: Clients) -> None:
    write(realistic(spec.service))

    df = read_logs(clients, spec, *WINDOW, extra="httpRequest.status>=500 -- timeouts")

    assert df["status"].tolist() == ["504"]


def test_odd_or_missing_fields_never_crash() -> None:
    odd = [
        {},
        {"timestamp": "not a time", "severity": 500, "logName": "no-logs-part"},
        {"jsonPayload": ["a list"], "httpRequest": "GET /", "resource": {"labels": 3}},
        {"jsonPayload": {"message": {"nested": 1}, "processed": "12", "errors": 1.5}},
        {"jsonPayload": {"processed": "many", "errors": None}, "httpRequest": {"latency": 5}},
    ]

    df = entries_frame(odd)

    assert list(df.columns) == list(COLUMNS)
    assert df["timestamp"].isna().all()
    assert df["severity"].tolist() == ["DEFAULT", "500", "DEFAULT", "DEFAULT", "DEFAULT"]
    assert df["message"].tolist()[3] == "{'nested': 1}"
    assert df["processed"].tolist() == [pd.NA, pd.NA, pd.NA, 12, pd.NA]
    assert df["errors"].isna().all()
    assert df["log"].tolist()[1] == "no-logs-part"
    assert df["latency"].isna().all()


def mark() -> int:
    return lc.call("/_localcloud/calls?since=0")[1]["next"]


def list_calls(since: int) -> int:
    calls = lc.call(f"/_localcloud/calls?since={since}")[1]["calls"]
    return sum(c["method"] == "POST" and c["path"].endswith("/entries:list") for c in calls)


def many(service: str, count: int) -> None:
    """`count` job lines a millisecond apart, written in batches of 500."""
    entries = [
        stdout(service, i / 1000, "INFO", message=f"row {i}", job="fx-rates", processed=i)
        for i in range(count)
    ]
    for start in range(0, count, 500):
        write(entries[start : start + 500])


def test_paging_reads_everything_in_one_call_per_thousand(spec: Spec, clients: Clients) -> None:
    many(spec.service, 2500)
    before = mark()

    df = read_logs(clients, spec, *WINDOW, limit=100_000)

    assert list_calls(before) == 3
    assert len(df) == 2500
    assert df["processed"].tolist() == list(range(2500))
    assert df["timestamp"].is_monotonic_increasing


@pytest.mark.parametrize(("limit", "calls"), [(10, 1), (1000, 1), (1500, 2)])
def test_limit_caps_rows_and_calls(spec: Spec, clients: Clients, limit: int, calls: int) -> None:
    many(spec.service, 2500)
    before = mark()

    df = read_logs(clients, spec, *WINDOW, limit=limit)

    assert list_calls(before) == calls
    assert df["processed"].tolist() == list(range(limit))


def test_no_entries_gives_an_empty_frame_with_the_columns(spec: Spec, clients: Clients) -> None:
    df = read_logs(clients, spec, *WINDOW)

    pd.testing.assert_frame_equal(df, frame([]))


def test_recent_reads_the_last_freshness(spec: Spec, clients: Clients) -> None:
    now = datetime.now(UTC)
    entries = [
        stdout(spec.service, 0, "INFO", message="5 minutes ago"),
        stdout(spec.service, 0, "ERROR", message="2 hours ago"),
    ]
    entries[0]["timestamp"] = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    entries[1]["timestamp"] = (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    write(entries)

    assert recent(clients, spec)["message"].tolist() == ["5 minutes ago"]
    assert recent(clients, spec, "1d")["message"].tolist() == ["2 hours ago", "5 minutes ago"]
    assert recent(clients, spec, "1d", errors_only=True)["message"].tolist() == ["2 hours ago"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("1h", 3600), ("1d", 86400), ("30s", 30), ("1h30m", 5400), ("2w", 1209600)],
)
def test_freshness_strings(text: str, seconds: int) -> None:
    assert parse_freshness(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "1y", "-5m"])
def test_bad_freshness_says_how_to_write_it(text: str) -> None:
    with pytest.raises(BadInput, match="10m, 1h, 1d"):
        parse_freshness(text)
