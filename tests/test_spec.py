"""The spec rejects what Google would reject, naming file, line, key, value, rule and fix."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest

from conftest import DELETE, EXAMPLE, SHIPPED_PARAMS, tool
from opslib.cli import main as cli
from opslib.core.errors import BadInput, SpecError
from opslib.spec.loader import load_spec
from opslib.spec.summary import summarize

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
    ({"deploy": {"env": {"PORT": "9000"}}}, "deploy.env.PORT", "reserves PORT", "APP_PORT"),
    ({"deploy": {"env": {"1BAD": "x"}}}, "deploy.env.1BAD", "not starting with a digit", "BAD"),
    ({"deploy": {"env": {"DEBUG": True}}}, "deploy.env.DEBUG", "values are strings", "quote"),
    ({"secrets": {"API_KEY": "api-key"}}, "secrets.API_KEY", "NAME:VERSION", "api-key:latest"),
    ({"secrets": {"API_KEY": "api key:latest"}}, "secrets.API_KEY", "secret id", "api-key"),
    ({"secrets": {"K_SERVICE": "x:latest"}}, "secrets.K_SERVICE", "reserves", "APP_K_SERVICE"),
    ({"secrets": {"API_KEY": "k:v1.0"}}, "secrets.API_KEY", "secret version", ":latest"),
    ({"secrets": {"API_KEY": 5}}, "secrets.API_KEY", "NAME:VERSION", "api-key:latest"),
    ({"deploy": {"cpu": float("nan")}}, "deploy.cpu", "number of vCPUs", "cpu: 1"),
    ({"deploy": {"cpu": float("inf")}}, "deploy.cpu", "number of vCPUs", "cpu: 1"),
    ({"deploy": {"cpu": "sNaN"}}, "deploy.cpu", "number of vCPUs", "cpu: 1"),
    ({"deploy": {"cpu": "\u0662"}}, "deploy.cpu", "number of vCPUs", "cpu: 1"),
    ({"deploy": {"memory": "\u0665\u0661\u0662Mi"}}, "deploy.memory", "with a unit", "512Mi"),
    ({"deploy": {"timeout": float("nan")}}, "deploy.timeout", "finite", "900s"),
    ({"job": {"expected_duration": float("inf")}}, "job.expected_duration", "finite", "900s"),
    (
        {"schedule": {"attempt_deadline": "\u0669\u0660\u0660s"}},
        "schedule.attempt_deadline",
        "with a unit",
        "900s",
    ),
    (
        {"schedule": {"body": {"dry_run": date(2024, 1, 1)}}},
        "schedule.body.dry_run",
        "is a date, which JSON cannot hold",
        "quote it",
    ),
    (
        {"job": {"description": "a\x00b"}},
        "job.description",
        "control characters (U+0000)",
        "remove",
    ),
    ({"service": "batch-service\n"}, "service", "Cloud Run service id", "batch-service"),
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
        {"job": {"expected_duration": "2000s", "runtime": "service"}},
        "job.expected_duration",
        "over 30 min",
        "Cloud Run job",
    ),
    ({"job": {"expected_duration": "25h"}}, "job.expected_duration", "at most 24h", "job.tasks"),
    ({"job": {"runtime": "job", "task_timeout": "25h"}}, "job.task_timeout", "24h", "2h"),
    (
        {"job": {"expected_duration": "2h", "task_timeout": "1h"}},
        "job.task_timeout",
        "exceed the expected duration",
        "raise job.task_timeout",
    ),
    ({"job": {"runtime": "job", "tasks": 2, "parallelism": 3}}, "job.parallelism", "exceed", "2"),
    ({"job": {"tasks": 4}}, "job.tasks", "Cloud Run job", "job.runtime: job"),
    ({"job": {"runtime": "job", "max_retries": 11}}, "job.max_retries", "0 to 10", "0-10"),
    ({"job": {"runtime": "job", "tasks": 0}}, "job.tasks", "1 to 10,000", "1-10000"),
    ({"job": {"overlap": "never"}}, "job.overlap", "", ""),
    (
        {"job": {"expected_duration": "900s"}},
        "job.expected_duration",
        "longer than the attempt deadline",
        "raise schedule.attempt_deadline",
    ),
    (
        {"schedule": {"headers": {"User-Agent": "x"}}},
        "schedule.headers.User-Agent",
        "reserves",
        "remove",
    ),
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
        {"schedule": {"service_account": "s@demo-project-2.iam.gserviceaccount.com"}},
        "schedule.service_account",
        "in the job's project",
        "scheduler@demo-project",
    ),
    (
        {"schedule": {"service_account": "x-demo-project@appspot.gserviceaccount.com"}},
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
    {"schedule": {"time_zone": "utc"}},
    {"schedule": {"service_account": "demo-project@appspot.gserviceaccount.com"}},
    {"schedule": {"service_account": "s@demo-project.iam.gserviceaccount.com"}},
    {"schedule": {"service_account": "123-compute@developer.gserviceaccount.com"}},
    {"job": {"description": "Collect FX rates\n\tevery weekday\n"}},
    {"job": {"expected_duration": "45m"}},  # becomes a Cloud Run job
    {"job": {"runtime": "job", "tasks": 4, "parallelism": 2, "task_timeout": "24h"}},
    {"job": {"expected_duration": "2h", "tasks": 4, "max_retries": 0, "overlap": "queue"}},
]


@pytest.mark.parametrize("overrides", VALID)
def test_accepts_what_google_accepts(write_params, overrides):
    spec = load_spec(write_params(**overrides))
    assert len(summarize(spec)) > 10  # what `opslib check` prints works for every valid spec


def test_shipped_parameters_are_valid():
    for path in SHIPPED_PARAMS:
        load_spec(path)


def test_check_says_when_work_runs_as_a_cloud_run_job(write_params, capsys):
    long = write_params(
        "long", job={"expected_duration": "45m"}, schedule={"attempt_deadline": "10m"}
    )
    code, out, _ = _check(long, capsys)
    assert code == 0
    assert "it will run as a Cloud Run job" in out and "task timeout 4050s" in out
    assert "attempt_deadline plays no role for a Cloud Run job" in out
    assert "python -m scripts.batch.fx_rates" in out
    spec = load_spec(long)
    assert spec.job.effective_runtime == "job" and spec.job.effective_task_timeout == 4050
    short = load_spec(write_params("short"))
    assert short.job.effective_runtime == "service"
    code, out, _ = _check(write_params("short2"), capsys)
    assert "Cloud Run job" not in out and "note:" not in out


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


def test_each_bad_env_and_secret_key_is_reported_at_its_own_path(write_params):
    params = write_params(
        deploy={"env": {"1A": "x", "OK": "y", "PORT": "z"}},
        secrets={"K_SERVICE": "a:latest", "B": "no-version", "C": "c:1"},
    )
    with pytest.raises(SpecError) as info:
        load_spec(params)
    lines = params.read_text().splitlines()
    by_path = {i.path: i for i in info.value.issues}
    assert set(by_path) == {"deploy.env.1A", "deploy.env.PORT", "secrets.K_SERVICE", "secrets.B"}
    for path, issue in by_path.items():
        assert lines[issue.line - 1].strip().startswith(path.split(".")[-1]), (path, issue.line)


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


def _check(params: Path, capsys) -> tuple[int, str, str]:
    """`opslib check PARAMS` in this process (the console script is tested above)."""
    code = cli.main(["check", str(params)])
    out, err = capsys.readouterr()
    return code, out, err


def _example_with(old: str, new: str) -> bytes:
    text = EXAMPLE.read_text()
    assert old in text, old
    return text.replace(old, new).encode()


# (case, file content or None for "a directory", words stderr must hold)
CLI_BAD_INPUT = [
    ("cpu-nan", _example_with("cpu: 2", "cpu: .nan"), "deploy.cpu = nan"),
    ("cpu-inf", _example_with("cpu: 2", "cpu: .inf"), "deploy.cpu = inf"),
    ("cpu-snan", _example_with("cpu: 2", "cpu: sNaN"), "deploy.cpu = 'sNaN'"),
    (
        "body-date",
        _example_with("{dry_run: false}", "{dry_run: 2024-01-01}"),
        "schedule.body.dry_run = ***",
    ),
    (
        "not-utf8",
        _example_with("Seoul time", "Seoul time \xff").replace(b"\xc3\xbf", b"\xff"),
        "UTF-8",
    ),
    ("directory", None, "holds no *.yaml parameters file"),  # a folder: check takes folders
]


@pytest.mark.parametrize(
    ("case", "content", "words"), CLI_BAD_INPUT, ids=[c[0] for c in CLI_BAD_INPUT]
)
def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys, case, content, words):
    params = tmp_path / f"{case}.yaml"
    if content is None:
        params.mkdir()
    else:
        params.write_bytes(content)
    code, _out, err = _check(params, capsys)
    assert code == 2, err
    assert words in err and "fix" in err, err


SECRET = "sk-live-SECRET-123"
LEAKS = [
    ("schedule:\n", f"schedule:\n  headers: {{Authorization: 'Bearer {SECRET}', Host: x}}\n"),
    ("deploy:\n", f"deploy:\n  env: {{FX_API_KEY: '{SECRET}', 9BAD: '{SECRET}'}}\n"),
    ("{dry_run: false}", f"{{dry_run: false, token: '{SECRET}', day: 2024-01-01}}"),
    ("deploy:\n", f"secrets: {{API_KEY: '{SECRET}'}}\ndeploy:\n"),
    ("deploy:\n", f"secrets: {{API_KEY: '{SECRET} x:1'}}\ndeploy:\n"),
    ("deploy:\n", f"secret: {{API_KEY: '{SECRET}'}}\napi_key: '{SECRET}'\ndeploy:\n"),
    ("deploy:\n", f"secrets: {{A: 'a:1'}}\ndeploy:\n  env: {{A: '{SECRET}'}}\n"),
    ("deploy:\n", f"deploy:\n  env: '{SECRET}'\n"),
]


@pytest.mark.parametrize(("old", "new"), LEAKS, ids=[str(i) for i in range(len(LEAKS))])
def test_errors_never_print_secret_values(tmp_path, capsys, old, new):
    params = tmp_path / "leak.yaml"
    params.write_bytes(_example_with(old, new))
    code, out, err = _check(params, capsys)
    assert code == 2, out + err
    assert "***" in err
    assert "SECRET" not in out + err, err
