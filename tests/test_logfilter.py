"""Cloud Logging filters as Google documents them, checked against realistic Cloud Run entries.

Every table row names exactly which of the four entries below must match, so a wrong precedence,
a missing-versus-defaulted slip or a string-instead-of-number comparison shows up as a diff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import pytest

from opslib.localcloud.logging.filter import FilterError, compile_filter, timestamp_nanos

RUN_LABELS = {
    "service_name": "batch-service",
    "revision_name": "batch-service-00003-xyz",
    "location": "us-central1",
    "project_id": "demo-proj",
    "configuration_name": "batch-service",
}
TRACE = "projects/demo-proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"

# A Cloud Run stdout line that was a JSON object: lifted severity, everything else in jsonPayload.
STDOUT = {
    "insertId": "6650c1f2000a1b2c3d4e5f60",
    "logName": "projects/demo-proj/logs/run.googleapis.com%2Fstdout",
    "resource": {"type": "cloud_run_revision", "labels": RUN_LABELS},
    "jsonPayload": {
        "message": "fx-rates run done",
        "job": "fx-rates",
        "processed": 42,
        "ratio": 0.75,
        "dry_run": False,
        "result": None,
        "city": "Zürich",
        "tags": ["daily", "fx"],
        "run": {"attempt": 2, "steps": [{"name": "fetch", "ms": 120}, {"name": "store", "ms": 30}]},
        "foo.bar": "dotted",
    },
    "severity": "INFO",
    "timestamp": "2026-11-28T05:00:01.123456789Z",
    "receiveTimestamp": "2026-11-28T05:00:01.300000Z",
    "labels": {"instanceId": "00f3a9", "run.googleapis.com/execution_name": "batch-job-abc"},
    "trace": TRACE,
    "spanId": "00f067aa0ba902b7",
    "traceSampled": True,
}
# The request log Cloud Run writes when a request hits the timeout.
REQUEST = {
    "insertId": "6650c1f2000b",
    "logName": "projects/demo-proj/logs/run.googleapis.com%2Frequests",
    "resource": {"type": "cloud_run_revision", "labels": RUN_LABELS},
    "httpRequest": {
        "requestMethod": "POST",
        "requestUrl": "https://batch-service-abc-uc.a.run.app/run",
        "requestSize": "494",
        "status": 504,
        "responseSize": "713",
        "userAgent": "Google-Cloud-Scheduler",
        "remoteIp": "107.178.1.2",
        "serverIp": "216.239.32.53",
        "latency": "29.999816421s",
        "protocol": "HTTP/1.1",
    },
    "severity": "ERROR",
    "textPayload": (
        "The request has been terminated because it has reached the maximum request timeout. "
        "To change this limit, see https://cloud.google.com/run/docs/configuring/request-timeout"
    ),
    "timestamp": "2026-11-28T05:00:30.000001Z",
    "receiveTimestamp": "2026-11-28T05:00:30.100000Z",
    "labels": {"instanceId": "00f3a9"},
    "trace": TRACE,
}
# Cloud Scheduler's record of the failed attempt.
SCHEDULER = {
    "insertId": "1x2y3z",
    "logName": "projects/demo-proj/logs/cloudscheduler.googleapis.com%2Fexecutions",
    "resource": {
        "type": "cloud_scheduler_job",
        "labels": {
            "job_id": "fx-rates-daily",
            "location": "us-central1",
            "project_id": "demo-proj",
        },
    },
    "jsonPayload": {
        "@type": "type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished",
        "jobName": "projects/demo-proj/locations/us-central1/jobs/fx-rates-daily",
        "targetType": "HTTP",
        "url": "https://batch-service-abc-uc.a.run.app/run",
        "status": "DEADLINE_EXCEEDED",
        "debugInfo": "URL_ERROR-ERROR_OTHER. Original HTTP response code number = 504",
    },
    "httpRequest": {"status": 504},
    "severity": "ERROR",
    "timestamp": "2026-11-28T05:00:30.5Z",
    "receiveTimestamp": "2026-11-28T05:00:31Z",
}
# A plain stderr line: textPayload, no severity (DEFAULT), written with a +09:00 offset.
STDERR = {
    "insertId": "6650c1f2000c",
    "logName": "projects/demo-proj/logs/run.googleapis.com%2Fstderr",
    "resource": {"type": "cloud_run_revision", "labels": RUN_LABELS},
    "textPayload": "Traceback (most recent call last): TimeoutError: upstream timeout after 30s",
    "timestamp": "2026-11-28T14:00:02+09:00",
    "receiveTimestamp": "2026-11-28T05:00:02.5Z",
    "labels": {"instanceId": "00f3a9"},
}
ENTRIES = {"stdout": STDOUT, "request": REQUEST, "scheduler": SCHEDULER, "stderr": STDERR}
ALL = "stdout request scheduler stderr"
RUN = "stdout request stderr"


def matching(text: str) -> str:
    match = compile_filter(text)
    return " ".join(name for name, entry in ENTRIES.items() if match(entry))


def table(rows: str) -> list[tuple[str, str]]:
    """Rows are `filter  =>  entry names` (a written \\n is a newline), one case per line."""
    cases = []
    for line in rows.strip().splitlines():
        text, _, names = line.partition("=>")
        text = text.strip().replace("\\n", "\n")
        cases.append((text, " ".join(n for n in ENTRIES if n in names.split())))
    return cases


def check(text: str, expected: str) -> None:
    assert matching(text) == expected, text


SERVICE = 'resource.type="cloud_run_revision" AND resource.labels.service_name="batch-service"'
SCHEDULER_TYPE = "type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished"
CLIENT_FILTERS = [
    ("resource.type=cloud_run_revision AND resource.labels.service_name=batch-service", RUN),
    (f"{SERVICE} AND severity>=ERROR", "request"),
    # The Python client appends a +0000 bound; gcloud prepends a Z bound without parentheses.
    (f'{SERVICE} AND timestamp>="2026-11-28T05:00:02.000000+0000"', "request stderr"),
    (f'timestamp>="2026-11-28T05:00:02Z" AND {SERVICE}', "request stderr"),
    ('logName="projects/demo-proj/logs/run.googleapis.com%2Frequests"', "request"),
    ('log_id("run.googleapis.com/stdout")', "stdout"),
    ('log_id("cloudscheduler.googleapis.com/executions")', "scheduler"),
    ('NOT log_id("run.googleapis.com/stdout")', "request scheduler stderr"),
    ('jsonPayload.job="fx-rates" AND jsonPayload.processed>0', "stdout"),
    ("httpRequest.status>=500", "request scheduler"),
    (f'jsonPayload."@type"="{SCHEDULER_TYPE}"', "scheduler"),
    ('labels."run.googleapis.com/execution_name":*', "stdout"),
    ('textPayload:"timeout"', "request stderr"),
    ("-severity=ERROR", "stdout stderr"),
    ("-severity=DEBUG", ALL),
    ("NOT textPayload:foo", ALL),
    ("NOT textPayload:timeout", "stdout scheduler"),
    ('jsonPayload.message=~"^fx.*done$"', "stdout"),
    ("severity=(ERROR OR CRITICAL)", "request scheduler"),
    ('httpRequest.latency>"1s"', "request"),
]

GRAMMAR = table(
    """
    resource.type=cloud_run_revision severity>=ERROR  => request
    resource.type=cloud_run_revision\\nseverity>=ERROR  => request
    resource.type=cloud_run_revision -- only Cloud Run\\nseverity>=ERROR  => request
    severity=ERROR OR severity=INFO resource.type=cloud_run_revision  => stdout request
    (severity=ERROR OR severity=INFO) AND NOT resource.type=cloud_run_revision  => scheduler
    NOT NOT severity=ERROR  => request scheduler
    textPayload:timeout OR severity=INFO  => stdout request stderr
    textPayload:timeout or severity=INFO  =>
    textPayload:(request timeout)  => request
    textPayload:("terminated" OR "Traceback")  => request stderr
    resource.type=("cloud_scheduler_job" OR "gae_app")  => scheduler
    resource.labels.service_name=~("^batch" OR "^zzz")  => stdout request stderr
    jsonPayload.job=(NOT "fx-rates")  => request scheduler stderr
    jsonPayload.run.attempt>-1  => stdout
    """
)

CASE_RULES = table(
    """
    RESOURCE.TYPE="CLOUD_SCHEDULER_JOB"  => scheduler
    http_request.status=504  => request scheduler
    Resource.Labels.service_name=BATCH-SERVICE  => stdout request stderr
    jsonPayload.job="FX-RATES"  => stdout
    jsonPayload.city="ZÜRICH"  => stdout
    jsonPayload.JOB="fx-rates"  =>
    labels.INSTANCEID:*  =>
    labels.instanceId:*  => stdout request stderr
    httpRequest:"google-cloud-scheduler"  => request
    jsonPayload.message=~"^FX"  =>
    jsonPayload.message=~"run"  => stdout
    jsonPayload.message=~"done\\z"  => stdout
    jsonPayload.message!~"^zzz"  => stdout
    jsonPayload.processed=~"4"  =>
    """
)

MISSING_AND_DEFAULTED = table(
    """
    jsonPayload.nothere="x"  =>
    jsonPayload.nothere!="x"  =>
    NOT jsonPayload.nothere="x"  => stdout request scheduler stderr
    labels.nothere!="x"  =>
    resource.labels.job_id!="x"  => scheduler
    -jsonPayload.job="fx-rates"  => request scheduler stderr
    jsonPayload.nothere<"zzz"  =>
    jsonPayload.nothere=~"."  =>
    jsonPayload.nothere!~"."  =>
    httpRequest.status=0  => stdout stderr
    httpRequest.status!=504  => stdout stderr
    httpRequest.requestMethod=""  => stdout scheduler stderr
    httpRequest.latency<"1s"  => stdout scheduler stderr
    trace=""  => scheduler stderr
    severity=DEFAULT  => stderr
    traceSampled=false  => request scheduler stderr
    operation.first=false  => stdout request scheduler stderr
    jsonPayload.dry_run=FALSE  => stdout
    jsonPayload.dry_run!=true  => stdout
    """
)

TYPES = table(
    """
    severity>=warning  => request scheduler
    severity>400  => request scheduler
    severity<=200  => stdout stderr
    severity=200  => stdout
    severity>DEFAULT  => stdout request scheduler
    severity<INFO  => stderr
    severity:error  => request scheduler
    timestamp>="2026-11-28T05:00:02Z"  => request scheduler stderr
    timestamp>="2026-11-28T05:00:02+0000"  => request scheduler stderr
    timestamp>="2026-11-28T14:00:02+09:00"  => request scheduler stderr
    timestamp="2026-11-28T05:00:02Z"  => stderr
    timestamp<"2026-11-28T05:00:01.12345679Z"  => stdout
    timestamp<="2026-11-28T05:00:01.123456788Z"  =>
    timestamp>="2026-11-28"  => stdout request scheduler stderr
    timestamp<"2026-11-28"  =>
    timestamp>="2026-11-29"  =>
    receiveTimestamp>"2026-11-28T05:00:30.5Z"  => scheduler
    httpRequest.latency>"29.999816420s"  => request
    httpRequest.latency>"29.999816421s"  =>
    httpRequest.latency>="29999ms"  => request
    httpRequest.latency<"1m"  => stdout request scheduler stderr
    httpRequest.requestSize>50  => request
    httpRequest.responseSize>=700  => request
    httpRequest.status="504"  => request scheduler
    jsonPayload.processed>9  => stdout
    jsonPayload.processed="42"  => stdout
    jsonPayload.processed=forty  =>
    jsonPayload.processed!=forty  => stdout
    jsonPayload.ratio<1  => stdout
    """
)

STRUCTURE = table(
    """
    jsonPayload.tags=fx  => stdout
    jsonPayload.tags=weekly  =>
    jsonPayload.tags!=fx  => stdout
    jsonPayload.run.attempt=2  => stdout
    jsonPayload.run.steps.name=store  => stdout
    jsonPayload.run.steps.ms>100  => stdout
    jsonPayload.run.steps.ms>500  =>
    jsonPayload:*  => stdout scheduler
    textPayload:*  => request stderr
    httpRequest:*  => request scheduler
    NOT httpRequest:*  => stdout stderr
    jsonPayload.result:*  => stdout
    jsonPayload.nothere:*  =>
    jsonPayload.result=NULL_VALUE  => stdout
    jsonPayload.job=NULL_VALUE  =>
    jsonPayload.result!=NULL_VALUE  =>
    jsonPayload.job!=NULL_VALUE  => stdout
    jsonPayload.result="NULL_VALUE"  =>
    jsonPayload."foo.bar"="dotted"  => stdout
    jsonPayload.foo.bar="dotted"  =>
    labels."run.googleapis.com/execution_name"="batch-job-abc"  => stdout
    jsonPayload."@type":AttemptFinished  => scheduler
    jsonPayload:"fx-rates"  => stdout scheduler
    resource.labels:"fx-rates-daily"  => scheduler
    """
)

SEARCHES = table(
    """
    "DEADLINE_EXCEEDED"  => scheduler
    deadline_exceeded  => scheduler
    "fx-rates"  => stdout scheduler
    504  => request scheduler
    "run.googleapis.com"  => stdout request stderr
    "upstream timeout"  => stderr
    "timeo"  => request stderr
    SEARCH("timeo")  =>
    SEARCH("upstream TIMEOUT")  => stderr
    SEARCH(textPayload, "request timeout")  => request
    SEARCH("`timeout after`")  => stderr
    SEARCH("`after timeout`")  =>
    """
)


@pytest.mark.parametrize(("text", "expected"), CLIENT_FILTERS)
def test_filters_our_clients_send(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), GRAMMAR)
def test_grammar(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), CASE_RULES)
def test_case_rules(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), MISSING_AND_DEFAULTED)
def test_missing_versus_defaulted(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), TYPES)
def test_typed_comparisons(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), STRUCTURE)
def test_arrays_objects_presence_and_null(text: str, expected: str) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), SEARCHES)
def test_global_restriction_and_search(text: str, expected: str) -> None:
    check(text, expected)


def test_precedence_is_not_then_or_then_and() -> None:
    """The documented example: "a" OR NOT "b" AND NOT "c" OR "d" = ("a" OR NOT "b") AND (...)."""
    words = ("alpha", "bravo", "charlie", "delta")
    documented = compile_filter('"alpha" OR NOT "bravo" AND NOT "charlie" OR "delta"')
    grouped = compile_filter('("alpha" OR (NOT "bravo")) AND ((NOT "charlie") OR "delta")')
    sql_reading_differs = False
    for present in product((False, True), repeat=4):
        text = " ".join(w for w, on in zip(words, present, strict=True) if on) or "none"
        entry = {"textPayload": text}
        a, b, c, d = present
        expected = (a or not b) and (not c or d)
        sql_reading_differs |= expected != (a or (not b and not c) or d)
        assert documented(entry) is expected, text
        assert grouped(entry) is expected, text
    assert sql_reading_differs


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("1969-12-31T23:59:59.5Z", -500_000_000),
        ("2016-11-29", 1_480_377_600 * 10**9),
        ("2016-11-29T00:00:00Z", 1_480_377_600 * 10**9),
        ("2016-11-29T09:00:00+09:00", 1_480_377_600 * 10**9),
        ("2016-11-29T09:00:00+0900", 1_480_377_600 * 10**9),
        ("2016-11-28T19:30:00-04:30", 1_480_377_600 * 10**9),
        ("2026-11-28T04:02:23.514722+0000", 1_795_838_543_514_722_000),
        ("2026-11-28T04:02:23.514722z", 1_795_838_543_514_722_000),
        ("2026-11-28T04:02:23.123456789Z", 1_795_838_543_123_456_789),
    ],
)
def test_timestamp_nanos(text: str, nanos: int) -> None:
    assert timestamp_nanos(text) == nanos
    whole = datetime.fromisoformat(text.replace("z", "Z")) if "T" in text else None
    if whole is not None and whole.tzinfo is not None:
        assert nanos // 10**9 == int(whole.astimezone(UTC).timestamp() // 1)


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "",
        "2026-02-30",
        "2026-11-28T25:00:00Z",
        "2026-11-28T04:02:23",
        "2026-11-28T04:02:23.Z",
        "2026-11-28T04:02:23.1234567890Z",
        "2026-11-28T04:02:23+2400",
        "2026-11-28T04:02Z",
    ],
)
def test_timestamp_nanos_rejects_junk(text: str) -> None:
    with pytest.raises(FilterError, match="Invalid timestamp"):
        timestamp_nanos(text)


def test_precomputed_ts_is_used_when_present() -> None:
    entry = {"timestamp": "2026-11-28T05:00:00Z", "_ts": timestamp_nanos("2030-01-01")}
    assert compile_filter('timestamp>="2029-12-31"')(entry)
    assert not compile_filter('timestamp>="2029-12-31"')({"timestamp": "2026-11-28T05:00:00Z"})
    assert not compile_filter('"2030"')(entry), "a bare value must not search internal keys"


def test_other_entry_shapes() -> None:
    assert compile_filter("severity=ERROR")({"severity": 500})
    assert compile_filter('httpRequest.latency>"999ms"')({"httpRequest": {"latency": "1s"}})
    assert not compile_filter('httpRequest.latency>"1s"')({"httpRequest": {"latency": "1s"}})
    org_log = {"logName": "organizations/123/logs/run.googleapis.com%2Fstdout"}
    assert compile_filter('log_id("run.googleapis.com/stdout")')(org_log)
    assert not compile_filter('log_id("run.googleapis.com/stderr")')(org_log)


@pytest.mark.parametrize("text", ["", "   \n\t", "-- nothing but a comment\n"])
def test_empty_filter_matches_everything(text: str) -> None:
    assert matching(text) == ALL


def test_filter_length_limit() -> None:
    longest = "severity>=ERROR" + " " * (20_000 - 15)
    assert matching(longest) == "request scheduler"
    with pytest.raises(FilterError, match="20000"):
        compile_filter(longest + " ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("thud=1", "unknown field 'thud'"),
        ("textPayload.thud:x", "textPayload is a string and has no field 'thud'"),
        ("resource.thud=1", "unknown field 'thud' in resource"),
        ("httpRequest.status.code=1", "status is a number and has no field 'code'"),
        ("severity.x=1", "has no field 'x'"),
        ("severity>=BOGUS", "severity expects a severity"),
        ("httpRequest.status=abc", "httpRequest.status expects a number"),
        ('timestamp>"yesterday"', "timestamp expects an RFC3339 timestamp"),
        ("httpRequest.latency>1", "expects a duration with a unit"),
        ("traceSampled=maybe", "expects true or false"),
        ('severity=~"ERR"', "=~ applies to strings"),
        ("httpRequest=5", "httpRequest is an object"),
        ("jsonPayload=5", "jsonPayload is an object"),
        ("jsonPayload.x<NULL_VALUE", "NULL_VALUE cannot be compared with <"),
        ('jsonPayload.x=~"(?=a)"', "lookahead '(?=' is not RE2 syntax"),
        ('jsonPayload.x=~"(?<!a)b"', "lookbehind"),
        ('jsonPayload.x=~"(a)\\\\1"', "backreference"),
        ('jsonPayload.x=~"\\\\pL"', "not supported by localcloud"),
        ('jsonPayload.x=~"("', "bad regular expression"),
        ('SEARCH("--")', "SEARCH needs at least one word"),
    ],
)
def test_semantic_errors(text: str, fragment: str) -> None:
    with pytest.raises(FilterError, match="position") as caught:
        compile_filter(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "sample(insertId, 0.1)",
        'ip_in_net(httpRequest.remoteIp, "10.0.0.0/8")',
        "cast(timestamp, STRING)",
        'regexp_extract(textPayload, "(a)")',
        "source(projects/demo-proj)",
        "severity=ERROR AND SAMPLE(insertId, 0.5)",
    ],
)
def test_unsupported_functions_say_so(text: str) -> None:
    with pytest.raises(FilterError, match="not supported by localcloud"):
        compile_filter(text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("severity>=", "line 1, column 11 (position 10)"),
        ("(severity=ERROR", "line 1, column 16 (position 15)"),
        ('resource.type="abc', "line 1, column 15 (position 14)"),
        ("severity=ERROR)", "line 1, column 15 (position 14)"),
        ("severity=ERROR AND", "line 1, column 19 (position 18)"),
        ("severity ! ERROR", "line 1, column 10 (position 9)"),
        ("resource.type=x\nseverity>=", "line 2, column 11 (position 26)"),
        ("resource.type=*", "line 1, column 15 (position 14)"),
        ("NOT", "line 1, column 4 (position 3)"),
        ('labels."a"b=1', "line 1, column 11 (position 10)"),
        ("jsonPayload..x=1", "line 1, column 1 (position 0)"),
        ('foo("x")', "line 1, column 1 (position 0)"),
    ],
)
def test_syntax_errors_report_the_position(text: str, where: str) -> None:
    with pytest.raises(FilterError, match="Unparseable filter") as caught:
        compile_filter(text)
    assert where in str(caught.value)


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


def test_long_and_deeply_nested_filters() -> None:
    many = " AND ".join(["severity>=ERROR"] * 995)
    assert matching(many) == "request scheduler"
    assert matching(" OR ".join(["severity=DEBUG"] * 1000 + ["severity=INFO"])) == "stdout"
    assert matching("(" * 100 + "severity=INFO" + ")" * 100) == "stdout"
    assert matching("NOT " * 99 + "severity=INFO") == "request scheduler stderr"
    with pytest.raises(FilterError, match="nesting deeper than 100"):
        compile_filter("NOT " * 101 + "severity=INFO")
