"""The quick start's three answers -> a validated parameters file (never a secret value)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opslib.core.errors import BadInput, SpecError
from opslib.notebook import quickstart
from opslib.notebook.quickstart import Answers
from opslib.spec import params_file
from opslib.spec.loader import load_spec

VALUE = "sk-live-9f8e7d6c5b4a"  # looks like what people paste


def write(path: Path, answers: Answers, **kwargs) -> str:
    return quickstart.write_params(path, answers, **kwargs).changes[0].action


def test_the_answers_become_a_valid_file_like_example_yaml(tmp_path):
    path = tmp_path / "parameters" / "fx-rates.yaml"
    answers = Answers(
        name="fx-rates",
        description="매일 환율 수집",
        cron="0 9 * * 1-5",
        time_zone="Asia/Seoul",
        api_keys=("FX_API_KEY",),
    )
    assert write(path, answers) == "create"
    spec = load_spec(path)
    assert (spec.job.name, spec.job.description) == ("fx-rates", "매일 환율 수집")
    assert (spec.schedule.cron, spec.schedule.time_zone) == ("0 9 * * 1-5", "Asia/Seoul")
    assert spec.secrets == {"FX_API_KEY": "fx-api-key:latest"}
    # The seed's defaults: deadline 900s, 2 vCPU / 2Gi, one warm instance.
    assert (spec.schedule.attempt_deadline, spec.deploy.timeout) == (900, 900)
    assert (spec.deploy.memory, str(spec.deploy.cpu), spec.deploy.min_instances) == (
        2 * 1024**3,
        "2",
        1,
    )
    text = path.read_text(encoding="utf-8")
    assert (
        "name: fx-rates               # route /run-fx-rates, module scripts/batch/fx_rates.py"
        in text
    )
    assert 'cron: "0 9 * * 1-5"          # At 09:00, Monday through Friday' in text


def test_the_same_answers_again_change_nothing(tmp_path):
    path = tmp_path / "a.yaml"
    write(path, Answers(name="fx-rates"))
    stamp = path.stat().st_mtime_ns
    assert write(path, Answers(name="fx-rates")) == "no change"
    assert path.stat().st_mtime_ns == stamp


def test_a_different_existing_file_is_kept_unless_asked(tmp_path):
    path = tmp_path / "a.yaml"
    write(path, Answers(name="fx-rates"))
    text = path.read_bytes()
    other = Answers(name="fx-rates", description="something else", cron="*/30 * * * *")
    with pytest.raises(BadInput) as caught:
        write(path, other)
    assert "job.description" in caught.value.what and "overwrite" in caught.value.fix
    assert path.read_bytes() == text
    assert write(path, other, overwrite=True) == "update"
    assert load_spec(path).schedule.cron == "*/30 * * * *"


def test_a_schedule_chosen_in_the_picker_survives_running_the_notebook_again(tmp_path):
    path = tmp_path / "a.yaml"
    write(path, Answers(name="fx-rates"))
    params_file.set_schedule(path, "0 8 * * 2-6", "Asia/Seoul")  # what the cron picker does
    plan = quickstart.write_params(path, Answers(name="fx-rates"))
    change = plan.changes[0]
    assert change.action == "no change" and "cron picker" in change.detail
    assert load_spec(path).schedule.cron == "0 8 * * 2-6"


def test_a_hand_written_file_is_not_replaced(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("# mine\nnot: the same\n")
    with pytest.raises(BadInput):
        write(path, Answers(name="fx-rates"))
    assert path.read_text() == "# mine\nnot: the same\n"


def test_dry_run_plans_without_writing(tmp_path):
    path = tmp_path / "a.yaml"
    assert write(path, Answers(name="fx-rates"), dry_run=True) == "create"
    assert not path.exists()


@pytest.mark.parametrize(
    ("answers", "key", "line"),
    [
        (Answers(name="FX Rates"), "job.name", 9),
        (Answers(name="fx-rates", cron="0 9 * * *  *"), "schedule.cron", 13),
        (Answers(name="fx-rates", time_zone="KST"), "schedule.time_zone", 14),
        (Answers(name="fx-rates", region="seoul"), "region", 6),
    ],
)
def test_a_bad_answer_is_reported_at_its_line_and_nothing_is_written(tmp_path, answers, key, line):
    path = tmp_path / "parameters" / "x.yaml"
    with pytest.raises(SpecError) as caught:
        quickstart.write_params(path, answers)
    (issue,) = caught.value.issues
    assert (issue.file, issue.path, issue.line) == (str(path), key, line)
    assert not path.exists()
    assert quickstart.render(answers).splitlines()[line - 1].lstrip().startswith(key.split(".")[-1])


def test_env_file_gives_key_names_and_never_values(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text(f'FX_API_KEY={VALUE}\n# note\nexport OTHER_TOKEN="two words"\n')
    # key_names reads a relative env_file from the working directory if it is there: from an
    # empty one, as the repository's root (where a user may keep their .env) is not.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    keys = quickstart.key_names(["FX_API_KEY"], ".env", root=tmp_path)
    assert keys == ("FX_API_KEY", "OTHER_TOKEN")  # given first, each once
    path = tmp_path / "p.yaml"
    plan = quickstart.write_params(path, Answers(name="fx-rates", api_keys=keys))
    text = path.read_text()
    assert VALUE not in text and "two words" not in text
    assert VALUE not in plan.to_frame().to_string()
    assert yaml.safe_load(text)["secrets"] == {
        "FX_API_KEY": "fx-api-key:latest",
        "OTHER_TOKEN": "other-token:latest",
    }


def test_key_names_from_text():
    assert quickstart.key_names("FX_API_KEY, SLACK_TOKEN  DB_PASSWORD") == (
        "FX_API_KEY",
        "SLACK_TOKEN",
        "DB_PASSWORD",
    )
    assert quickstart.key_names([]) == ()


def test_a_pasted_value_is_refused_without_being_echoed():
    with pytest.raises(BadInput) as caught:
        quickstart.key_names([VALUE])
    assert VALUE not in caught.value.render()


def test_a_missing_env_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match=r"no such \.env file"):
        quickstart.key_names([], "nowhere.env", root=tmp_path)


def test_no_secrets_section_without_keys():
    assert "secrets" not in yaml.safe_load(quickstart.render(Answers(name="fx-rates")))


def test_a_multiline_description_stays_out_of_the_comments(tmp_path):
    path = tmp_path / "a.yaml"
    write(path, Answers(name="fx-rates", description="first line\nsecond: line"))
    assert load_spec(path).job.description == "first line\nsecond: line"
    assert path.read_text().splitlines()[0] == "# first line second: line"


def test_params_path(tmp_path):
    assert quickstart.params_path(tmp_path, "fx-rates") == tmp_path / "parameters/fx-rates.yaml"
    assert quickstart.params_path(tmp_path, "x", "custom/a.yaml") == tmp_path / "custom/a.yaml"
    assert quickstart.params_path(tmp_path, "x", "/abs/a.yaml") == Path("/abs/a.yaml")


def test_summary_reads_the_file_back(tmp_path):
    path = tmp_path / "a.yaml"
    write(path, Answers(name="fx-rates", api_keys=("FX_API_KEY",)))
    frame = quickstart.summary(path).set_index("setting")["value"]
    assert frame["route"] == "POST /run-fx-rates"
    assert frame["secrets"] == "FX_API_KEY <- fx-api-key:latest"
