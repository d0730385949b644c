"""The spec rejects what Google would reject, naming file, line, key, value, rule and fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import DELETE, EXAMPLE, ROOT, tool
from opslib.errors import BadInput, SpecError
from opslib.spec_loader import load_spec

# (overrides, key path, words the rule must contain, words the fix must contain)
INVALID = [
    ({"service": "Batch_Service"}, "service", "Cloud Run service id", "batch-service"),
    ({"service": "a" * 50}, "service", "less than 50", "a"),
    ({"service": "batch-"}, "service", "cannot end with a hyphen", "batch"),
    ({"job": {"name": "FX Rates"}}, "job.name", "lowercase letters", "fx-rates"),
    ({"job": {"name": "import"}}, "job.name", "Python keyword", "import-job"),
    ({"region": "asia-northeast-3"}, "region", "did you mean 'asia-northeast3'", "asia-northeast3"),
    ({"schedule": {"cron": "0 9 * *"}}, "schedule.cron", "got 4 field(s)", "0 9 * * 1-5"),
    (
        {"schedule": {"cron": "0 0 9 * * 1-5"}},
        "schedule.cron",
        "drop the seconds field",
        "5 fields",
    ),
    ({"schedule": {"cron": "0 9 L * *"}}, "schedule.cron", "day-of-month field 'L'", "1-31"),
    ({"schedule": {"cron": "0 9 * * 1#2"}}, "schedule.cron", "no L, W, #", "0-6"),
    ({"schedule": {"cron": "0 25 * * *"}}, "schedule.cron", "hour field is out of range", "0-23"),
    ({"schedule": {"cron": "0 9 30 2 *"}}, "schedule.cron", "never matches", "1-31"),
    ({"schedule": {"cron": "@daily"}}, "schedule.cron", "got 1 field", "5 fields"),
    ({"schedule": {"time_zone": "KST"}}, "schedule.time_zone", "abbreviation", "Asia/Seoul"),
    ({"schedule": {"time_zone": "EST"}}, "schedule.time_zone", "abbreviation", "America/New_York"),
    ({"schedule": {"time_zone": "PST8PDT"}}, "schedule.time_zone", "abbreviation", "Los_Angeles"),
    ({"schedule": {"time_zone": "asia/seoul"}}, "schedule.time_zone", "'Asia/Seoul'", "Asia/Seoul"),
    ({"schedule": {"time_zone": "Mars/Olympus"}}, "schedule.time_zone", "not in the tz", "IANA"),
    ({"schedule": {"attempt_deadline": "10s"}}, "schedule.attempt_deadline", "15s to 30m", "15s"),
    ({"schedule": {"attempt_deadline": "31m"}}, "schedule.attempt_deadline", "15s to 30m", "1800s"),
    ({"schedule": {"attempt_deadline": "900"}}, "schedule.attempt_deadline", "with a unit", "900s"),
    (
        {"schedule": {"attempt_deadline": "1000s"}},
        "schedule.attempt_deadline",
        "must not exceed the Cloud Run request timeout (900s)",
        "raise deploy.timeout to 1000s",
    ),
    ({"deploy": {"timeout": "3601s"}}, "deploy.timeout", "1s to 3600s", "Cloud Run job"),
    (
        {"deploy": {"cpu": 1, "memory": "8Gi"}},
        "deploy.memory",
        "memory above 4Gi needs at least 2 CPUs",
        "raise cpu to 2",
    ),
    ({"deploy": {"cpu": 4, "memory": "1Gi"}}, "deploy.memory", "4 CPUs need at least 2Gi", "2Gi"),
    ({"deploy": {"cpu": 3}}, "deploy.cpu", "one of 1, 2, 4, 6, 8", "cpu: 4"),
    ({"deploy": {"cpu": "0.05"}}, "deploy.cpu", "at least 0.08", "0.08"),
    (
        {"deploy": {"cpu": 0.25, "memory": "1Gi"}},
        "deploy.memory",
        "memory above 512Mi needs at least 0.5 CPU",
        "0.5",
    ),
    (
        {"deploy": {"cpu": 0.5, "memory": "512Mi", "concurrency": 10}},
        "deploy.concurrency",
        "concurrency must be 1",
        "concurrency: 1",
    ),
    ({"deploy": {"memory": "64Gi", "cpu": 8}}, "deploy.memory", "128Mi to 32Gi", "32Gi"),
    ({"deploy": {"memory": "2GB"}}, "deploy.memory", "quantity with a unit", "2Gi"),
    ({"deploy": {"min_instances": -1}}, "deploy.min_instances", "0 to 1000", "0 to 1000"),
    (
        {"deploy": {"min_instances": 5, "max_instances": 2}},
        "deploy.min_instances",
        "cannot exceed max instances",
        "max_instances to 5",
    ),
    ({"deploy": {"env": {"PORT": "9000"}}}, "deploy.env", "reserves PORT", "APP_PORT"),
    ({"deploy": {"env": {"1BAD": "x"}}}, "deploy.env", "not starting with a digit", "BAD"),
    ({"deploy": {"env": {"DEBUG": True}}}, "deploy.env", "values are strings", 'DEBUG: "True"'),
    ({"secrets": {"API_KEY": "api-key"}}, "secrets", "NAME:VERSION", "api-key:latest"),
    ({"secrets": {"API_KEY": "api key:latest"}}, "secrets", "secret id", "api-key"),
    ({"secrets": {"K_SERVICE": "x:latest"}}, "secrets", "reserves", "APP_K_SERVICE"),
    ({"secrets": {"API_KEY": "k:v1.0"}}, "secrets", "secret version", "k:latest"),
    (
        {"deploy": {"env": {"API_KEY": "x"}}, "secrets": {"API_KEY": "k:1"}},
        "secrets.API_KEY",
        "both as a plain env var and as a secret",
        "remove deploy.env.API_KEY",
    ),
    (
        {"schedule": {"http_method": "GET"}},
        "schedule.body",
        "only with POST, PUT, PATCH",
        "http_method: POST",
    ),
    ({"schedule": {"http_method": "FETCH"}}, "schedule.http_method", "one of", "'POST'"),
    (
        {"schedule": {"body": {"dry_run": False, "market": "KR"}}},
        "schedule.body",
        "only reads dry_run",
        "job.pattern: class",
    ),
    ({"schedule": {"cronn": "0 9 * * *"}}, "schedule.cronn", "did you mean 'cron'", "remove"),
    ({"projct": "x"}, "projct", "did you mean 'project'", "remove projct"),
    ({"schedule": {"cron": DELETE}}, "schedule.cron", "required", 'schedule.cron: "0 9 * * 1-5"'),
    ({"project": "Demo Project"}, "project", "project id", "my-project-123"),
    (
        {"job": {"expected_duration": "2000s"}},
        "job.expected_duration",
        "over 30 min",
        "Cloud Run job",
    ),
    (
        {"job": {"expected_duration": "900s"}},
        "job.expected_duration",
        "longer than the attempt deadline",
        "raise schedule.attempt_deadline",
    ),
    ({"schedule": {"headers": {"User-Agent": "x"}}}, "schedule.headers", "reserves", "remove"),
    ({"schedule": {"retry": {"count": 6}}}, "schedule.retry.count", "0 to 5", "between 0 and 5"),
    (
        {"schedule": {"retry": {"min_backoff": "2h", "max_backoff": "1h"}}},
        "schedule.retry.min_backoff",
        "must not exceed maxBackoff",
        "3600s",
    ),
    ({"job": {"description": "x" * 501}}, "job.description", "at most 500", "shorten"),
    (
        {"schedule": {"service_account": "s@other-project.iam.gserviceaccount.com"}},
        "schedule.service_account",
        "in the job's project",
        "scheduler@demo-project",
    ),
    (
        {"job": {"source_url": "ftp://example.com/x"}},
        "job.source_url",
        "http:// or https://",
        "https://",
    ),
    ({"target": "aws"}, "target", "one of", "'local'"),
]


@pytest.mark.parametrize(
    ("overrides", "path", "rule", "fix"),
    INVALID,
    ids=[c[1] + ":" + str(i) for i, c in enumerate(INVALID)],
)
def test_rejects_with_rule_and_fix(write_params, overrides, path, rule, fix):
    params = write_params(**overrides)
    with pytest.raises(SpecError) as info:
        load_spec(params)
    issues = {issue.path: issue for issue in info.value.issues}
    assert path in issues, info.value.render()
    issue = issues[path]
    assert rule in issue.rule, issue.render()
    assert fix in issue.fix, issue.render()
    assert issue.file == str(params)
    text = info.value.render()
    assert f"{params}:" in text and path in text and "rule:" in text and "fix:" in text


VALID = [
    {},
    {"schedule": {"time_zone": "UTC"}},
    {"schedule": {"time_zone": "Etc/UTC"}},
    {"schedule": {"time_zone": "America/New_York"}},
    {"schedule": {"cron": "*/30 * * * *"}},
    {"schedule": {"cron": "0 */4 * * *"}},
    {"schedule": {"cron": "0 8 * * 2-6"}},
    {"schedule": {"cron": "0 0 1,15 * *"}},
    {"schedule": {"cron": "0 9 * JAN-MAR MON-FRI"}},
    {"schedule": {"cron": "0 9 * * 7"}},
    {"schedule": {"attempt_deadline": "15m"}},
    {"schedule": {"attempt_deadline": 900}},
    {"deploy": {"cpu": "500m", "memory": "512Mi", "concurrency": 1}},
    {"deploy": {"cpu": 8, "memory": "32Gi"}},
    {"deploy": {"timeout": "1h"}, "schedule": {"attempt_deadline": "30m"}},
    {"job": {"pattern": "class"}, "schedule": {"body": {"market": "KR", "dry_run": True}}},
    {"schedule": {"http_method": "GET", "body": DELETE}},
    {"secrets": {"API_KEY": "projects/demo-project/secrets/api-key:3"}},
]


@pytest.mark.parametrize("overrides", VALID)
def test_accepts_what_google_accepts(write_params, overrides):
    load_spec(write_params(**overrides))


def test_shipped_parameters_are_valid():
    for path in sorted((ROOT / "parameters").glob("*.yaml")):
        load_spec(path)


def test_every_error_is_reported_at_once_with_lines(write_params):
    params = write_params(service="Bad_Name", region="mars-1", schedule={"time_zone": "KST"})
    with pytest.raises(SpecError) as info:
        load_spec(params)
    lines = params.read_text().splitlines()
    by_path = {i.path: i for i in info.value.issues}
    assert set(by_path) == {"service", "region", "schedule.time_zone"}
    for path, issue in by_path.items():
        key = path.split(".")[-1]
        assert lines[issue.line - 1].strip().startswith(f"{key}:"), (path, issue.line)


def test_duplicate_key_and_bad_yaml_are_located(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text(EXAMPLE.read_text() + "service: other\n")
    with pytest.raises(BadInput) as info:
        load_spec(dup)
    assert "given twice" in str(info.value) and f"{dup}:" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: demo-project\nschedule:\n  cron: [0 9\n")
    with pytest.raises(BadInput) as info:
        load_spec(broken)
    assert "not valid YAML" in str(info.value) and f"{broken}:" in str(info.value)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


def test_cli_check_exit_codes_and_writes_nothing(write_params, tmp_path):
    good = write_params("good")
    bad = write_params("bad", service="Bad_Name", schedule={"cron": "0 9 * *", "time_zone": "KST"})
    before = _snapshot(tmp_path)
    ok = subprocess.run(
        [tool("opslib"), "check", str(good)], capture_output=True, text=True, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert "next runs" in ok.stdout and "Asia/Seoul" in ok.stdout
    failed = subprocess.run(
        [tool("opslib"), "check", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert failed.returncode == 2
    assert "3 errors" in failed.stderr
    for key in ("service", "schedule.cron", "schedule.time_zone"):
        assert f"{key} = " in failed.stderr
    assert _snapshot(tmp_path) == before
