"""Writing a schedule back into a parameters file: comments and layout kept, checked, atomic."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLE, ROOT
from opslib.core.errors import BadInput, SpecError
from opslib.spec import params_file
from opslib.spec.loader import load_spec

MONTHLY = ROOT / "parameters" / "monthly-report.yaml"
COMMENT_COLUMN = 31  # where example.yaml's end-of-line comments start

ODD = """\
# top comment

target: local
project: demo-project
region: asia-northeast3
service: batch-service
job:
    name: fx-rates   # four-space indent
    description: >-
        a folded
        description
schedule:
    # the cron comes from the ops meeting
    cron: '0 9 * * 1-5'
    attempt_deadline: 900s

    retry: {count: 1}
deploy:
    timeout: 900s
    env:
        A: "1"
secrets:
    X_KEY: x-key:latest   # trailing
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return Path(shutil.copy(EXAMPLE, tmp_path / "example.yaml"))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_only_the_cron_line_changes_and_its_comment_describes_the_new_value(example):
    before = lines(example)
    change = params_file.set_schedule(example, "*/30 * * * *", "Asia/Seoul")
    after = lines(example)
    assert (change.action, change.fields) == ("update", ("schedule.cron",))
    expected = '  cron: "*/30 * * * *"'.ljust(COMMENT_COLUMN) + "# Every 30 minutes"
    assert after[12] == expected
    assert after[:12] == before[:12] and after[13:] == before[13:]
    assert load_spec(example).schedule.cron == "*/30 * * * *"


def test_a_zone_change_touches_only_the_zone_line(example):
    before = lines(example)
    params_file.set_schedule(example, "0 9 * * 1-5", "America/New_York")
    after = lines(example)
    assert after[13] == "  time_zone: America/New_York"
    assert after[:13] == before[:13] and after[14:] == before[14:]


def test_the_same_schedule_again_writes_nothing(example):
    params_file.set_schedule(example, "0 8 * * 2-6", "Asia/Seoul")
    stamp, text = example.stat().st_mtime_ns, example.read_bytes()
    change = params_file.set_schedule(example, " 0  8 * * 2-6 ", "Asia/Seoul")
    assert change.action == "no change"
    assert example.stat().st_mtime_ns == stamp and example.read_bytes() == text


def test_a_file_that_already_has_the_schedule_is_not_rewritten(example):
    stamp = example.stat().st_mtime_ns
    assert params_file.set_schedule(example, "0 9 * * 1-5", "Asia/Seoul").action == "no change"
    assert example.stat().st_mtime_ns == stamp
    assert example.read_bytes() == EXAMPLE.read_bytes()


@pytest.mark.parametrize(
    ("expr", "zone", "key", "line"),
    [
        ("61 * * * *", "Asia/Seoul", "schedule.cron", 13),
        ("0 9 * * 1#2", "Asia/Seoul", "schedule.cron", 13),
        ("0 9 * * 1-5", "KST", "schedule.time_zone", 14),
        ("0 9 * * 1-5", "Asia/Seol", "schedule.time_zone", 14),
    ],
)
def test_an_invalid_choice_writes_nothing_and_names_the_line(example, expr, zone, key, line):
    with pytest.raises(SpecError) as caught:
        params_file.set_schedule(example, expr, zone)
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.path) == (str(example), line, key)
    assert example.read_bytes() == EXAMPLE.read_bytes()
    assert [p.name for p in example.parent.iterdir()] == ["example.yaml"]  # no temp file left


def test_a_broken_file_is_reported_not_patched(example):
    example.write_text(EXAMPLE.read_text().replace("asia-northeast3", "asia-northeast9"))
    text = example.read_bytes()
    with pytest.raises(SpecError) as caught:
        params_file.set_schedule(example, "*/30 * * * *", "Asia/Seoul")
    assert caught.value.issues[0].path == "region"
    assert example.read_bytes() == text


def test_comments_flow_mappings_and_secrets_of_another_file_survive(tmp_path):
    path = Path(shutil.copy(MONTHLY, tmp_path / "monthly.yaml"))
    before = lines(path)
    params_file.set_schedule(path, "0 0 1 * *", "Asia/Tokyo")
    after = lines(path)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    cron_line = next(i for i, line in enumerate(before) if line.startswith("  cron:"))
    assert changed == [cron_line]  # the cron line only
    assert after[cron_line].startswith('  cron: "0 0 1 * *"')
    assert "day 1 of the month" in after[cron_line]


def test_four_space_indent_single_quotes_and_a_missing_zone(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(ODD)
    assert load_spec(path).schedule.time_zone == "Etc/UTC"  # absent: Scheduler's default
    change = params_file.set_schedule(path, "0 9 * * 1-5", "Asia/Seoul")
    assert change.fields == ("schedule.time_zone",)
    inserted = ODD.replace(
        "    cron: '0 9 * * 1-5'\n", "    cron: '0 9 * * 1-5'\n    time_zone: Asia/Seoul\n"
    )
    assert path.read_text() == inserted
    params_file.set_schedule(path, "*/30 * * * *", "Asia/Seoul")
    assert path.read_text() == inserted.replace("'0 9 * * 1-5'", "'*/30 * * * *'")


def test_the_default_zone_needs_no_key(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(ODD)
    params_file.set_schedule(path, "0 7 * * *", "Etc/UTC")
    assert path.read_text() == ODD.replace("'0 9 * * 1-5'", "'0 7 * * *'")


def test_crlf_line_ends_are_kept(tmp_path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(EXAMPLE.read_bytes().replace(b"\n", b"\r\n"))
    params_file.set_schedule(path, "0 8 * * 2-6", "Asia/Seoul")
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") == EXAMPLE.read_bytes().count(b"\n")
    assert b'cron: "0 8 * * 2-6"' in data


def test_the_files_mode_is_kept(example):
    example.chmod(0o600)
    params_file.set_schedule(example, "0 8 * * 2-6", "Asia/Seoul")
    assert example.stat().st_mode & 0o777 == 0o600


def test_check_text_names_the_file_the_text_is_for(tmp_path):
    target = tmp_path / "parameters" / "new.yaml"
    with pytest.raises(SpecError) as caught:
        params_file.check_text("project: demo-project\n", target)
    assert caught.value.file == str(target)
    assert {i.file for i in caught.value.issues} == {str(target)}
    with pytest.raises(BadInput) as bad:
        params_file.check_text("job: [unclosed\n", target)
    assert bad.value.where.startswith(f"{target}:")
    assert not target.exists()


def test_check_text_returns_the_spec():
    assert params_file.check_text(EXAMPLE.read_text(), "x.yaml").job.name == "fx-rates"


def test_current_schedule_reads_through_the_loader(example):
    assert params_file.current_schedule(example) == ("0 9 * * 1-5", "Asia/Seoul")
    with pytest.raises(BadInput):
        params_file.current_schedule(example.parent / "missing.yaml")
