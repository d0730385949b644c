"""localcloud's own rules (run/rules.py, scheduler/rules.py): Google's limits, Google's words.

Tables of cases against the documented limits, so a change of rule shows here; the same rules
are exercised through the official clients in the test_localcloud_<api>.py contract tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice

import pytest

from opslib.localcloud.run import rules as run
from opslib.localcloud.scheduler import rules as scheduler

GI, MI = 1024**3, 1024**2


@pytest.mark.parametrize(
    ("given", "cpus"),
    [("1", 1), ("1000m", 1), ("0.5", Decimal("0.5")), ("80m", Decimal("0.08")), ("8", 8)],
)
def test_cpu_values_cloud_run_offers(given, cpus):
    assert run.cpu(given) == cpus


@pytest.mark.parametrize("given", ["3", "0.07", "1.5", "16", "0.0805", "two", ""])
def test_cpu_values_cloud_run_refuses(given):
    with pytest.raises(run.RuleError, match="Invalid value specified for cpu"):
        run.cpu(given)


@pytest.mark.parametrize(
    ("given", "size"), [("512Mi", 512 * MI), ("2Gi", 2 * GI), ("1G", 10**9), ("0.5Gi", GI // 2)]
)
def test_memory_quantities(given, size):
    assert run.memory(given) == size


@pytest.mark.parametrize(
    ("cpus", "memory", "concurrency", "message"),
    [
        # Cloud Run's own words for this case (googleapis/repo-automation-bots#3875)
        (1, 8 * GI, 80, "For 1.0 CPU, memory must be between 128Mi and 4Gi inclusive."),
        (4, GI, 80, "For 4.0 CPU, memory must be between 2Gi and 16Gi inclusive."),
        (6, 2 * GI, 80, "For 6.0 CPU, memory must be between 4Gi and 24Gi inclusive."),
        ("0.4", GI, 1, "For 0.4 CPU, memory must be between 128Mi and 512Mi inclusive."),
        ("0.5", 2 * GI, 1, "For 0.5 CPU, memory must be between 128Mi and 1Gi inclusive."),
        (8, 64 * GI, 80, "For 8.0 CPU, memory must be between 4Gi and 32Gi inclusive."),
        ("0.5", 512 * MI, 80, "the maximum concurrency must be 1, not 80"),
    ],
)
def test_cpu_memory_pairs_cloud_run_refuses(cpus, memory, concurrency, message):
    with pytest.raises(run.RuleError) as info:
        run.check_limits(Decimal(cpus), memory, concurrency)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("cpus", "memory", "concurrency"),
    [(1, 512 * MI, 80), (2, 8 * GI, 80), (4, 2 * GI, 80), ("0.5", GI, 1), ("0.08", 128 * MI, None)],
)
def test_cpu_memory_pairs_cloud_run_takes(cpus, memory, concurrency):
    run.check_limits(Decimal(cpus), memory, concurrency)


def test_reserved_env_names_and_secret_references():
    with pytest.raises(run.RuleError, match="reserved env names were provided: PORT, K_SERVICE"):
        run.check_env(["A", "PORT", "K_SERVICE"], run.SERVICE_RESERVED_ENV)
    run.check_env(["PORT"], run.JOB_RESERVED_ENV)  # jobs get no PORT
    with pytest.raises(run.RuleError):
        run.check_env(["CLOUD_RUN_TASK_INDEX"], run.JOB_RESERVED_ENV)
    run.check_secret_reference("KEY", "projects/p/secrets/api-key")
    for bad in ("", "api key", "projects/p/api-key", "x" * 256):
        with pytest.raises(run.RuleError, match="Invalid secret reference for env KEY"):
            run.check_secret_reference("KEY", bad)


@pytest.mark.parametrize(
    "schedule",
    ["0 9 * * 1-5", "*/15 * * * *", "0 0-23/2 * * *", "0 9 1,15 JAN-MAR MON", "0 9 * * 7"],
)
def test_schedules_scheduler_takes(schedule):
    scheduler.check_schedule(schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 9 * *",  # four fields
        "0 0 9 * * *",  # a seconds field (cronsim would take six fields)
        "0 9 L * *",  # L (cronsim takes it)
        "0 9 * * 1#2",  # # (cronsim takes it)
        "0 9 ? * 1",
        "@daily",
        "0 24 * * *",  # out of range
        "every 5 minutes",
    ],
)
def test_schedules_scheduler_refuses(schedule):
    with pytest.raises(scheduler.RuleError, match=r"^Schedule or time zone is invalid\.$"):
        scheduler.check_schedule(schedule)


def test_time_zones_come_from_the_tz_database():
    assert scheduler.zone("Asia/Seoul").key == "Asia/Seoul"
    assert scheduler.zone("utc").key == "UTC" and scheduler.zone(None).key == "UTC"
    for bad in ("KST", "Asia/Nowhere", "../etc/passwd"):
        with pytest.raises(scheduler.RuleError, match=r"^Schedule or time zone is invalid\.$"):
            scheduler.zone(bad)


def test_runs_follow_the_wall_clock_of_the_zone():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    first = list(islice(scheduler.runs("0 9 * * 1-5", "Asia/Seoul", start), 2))
    assert [r.isoformat() for r in first] == [
        "2026-03-02T09:00:00+09:00",
        "2026-03-03T09:00:00+09:00",
    ]


def test_locations_are_schedulers():
    assert {"asia-northeast3", "us-central1", "europe-west1"} <= scheduler.LOCATIONS
    assert "asia-northeast9" not in scheduler.LOCATIONS and len(scheduler.LOCATIONS) > 30
