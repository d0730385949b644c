"""The seed's quick start: three answers (what job, how often, which API keys) -> one YAML file.

"사용자에게 3가지만 확인": 무슨 작업? 얼마나 자주? 특별한 API 키? The answers become a
`parameters/<name>.yaml` in the shape of `parameters/example.yaml` (with the seed's defaults:
attempt deadline 900s, 2 vCPU / 2Gi, min-instances 1), checked by the same loader as every
other parameters file before it is written.

API keys are names only: each becomes a Secret Manager reference in `secrets:` (FX_API_KEY ->
fx-api-key:latest, as `opslib.steps.secrets` names them); a .env file is read for its key names
and its values are dropped. An existing file with other content is never replaced unless asked,
and the same answers again change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from opslib.core.errors import BadInput
from opslib.core.fsutil import atomic_write
from opslib.core.plan import Change, Plan
from opslib.spec import cron, params_file, rules
from opslib.spec.loader import load_spec
from opslib.spec.pricing import min_instance_cost
from opslib.spec.rules import RuleBroken
from opslib.spec.summary import summarize
from opslib.steps.dotenv import parse_env, secret_id_for

STEP = "quickstart"
COMMENT_COLUMN = 31  # where example.yaml's end-of-line comments start
# An API key is named like an env var. Anything else may be a value pasted by mistake.
KEY_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,254}")


@dataclass(frozen=True)
class Answers:
    """The three answers, and where the automation runs (the defaults run on localcloud)."""

    name: str
    description: str = ""
    cron: str = "0 9 * * 1-5"
    time_zone: str = "Asia/Seoul"
    api_keys: tuple[str, ...] = ()
    pattern: str = "function"
    target: str = "local"
    project: str = "demo-project"
    region: str = "asia-northeast3"
    service: str = "batch-service"


def params_path(root: Path, name: str, params: str | Path = "") -> Path:
    """Where the answers go: `params` if given (relative to the project root), else
    parameters/<name>.yaml."""
    if params:
        path = Path(params).expanduser()
        return path if path.is_absolute() else Path(root) / path
    return Path(root) / "parameters" / f"{name}.yaml"


def key_names(
    api_keys: str | Iterable[str] = (), env_file: str | Path = "", root: Path | None = None
) -> tuple[str, ...]:
    """The API key names: those given (a list, or text split on commas and spaces) and the
    keys of `env_file` (its values are never kept), in order, each once."""
    given = re.split(r"[\s,]+", api_keys) if isinstance(api_keys, str) else list(api_keys)
    names = [str(name).strip() for name in given if str(name).strip()]
    for name in names:
        if not KEY_NAME.fullmatch(name):
            raise BadInput(
                "api_keys",
                "an API key is given by its env var name, like FX_API_KEY (capitals, digits, _); "
                "this entry is not one, and is not shown in case it is a value",
                "list names only; the values go to Secret Manager (opslib secrets import)",
            )
    if env_file:
        path = Path(env_file).expanduser()
        if not path.is_absolute() and root is not None and not path.exists():
            path = Path(root) / path
        for entry in parse_env(path):
            if not KEY_NAME.fullmatch(entry.key):
                raise BadInput(
                    f"{path}:{entry.line}",
                    f"{entry.key} is not an env var name in capitals (like FX_API_KEY)",
                    "rename the key in the .env file",
                )
            names.append(entry.key)
    return tuple(dict.fromkeys(names))


def render(answers: Answers) -> str:
    """The parameters file for `answers`, laid out and commented like example.yaml."""
    a = answers
    doc = CommentedMap()
    _put(doc, "target", a.target, "local (localcloud, the default) | gcp")
    _put(doc, "project", a.project)
    _put(doc, "region", a.region)
    _put(doc, "service", a.service, "Cloud Run service id")
    job = CommentedMap()
    module = str(a.name).replace("-", "_")
    _put(job, "name", a.name, f"route /run-{a.name}, module scripts/batch/{module}.py")
    _put(job, "pattern", a.pattern, "function (sync) | class (async run(**kwargs))")
    _put(job, "description", a.description)
    doc["job"] = job
    doc["schedule"] = _schedule(a)
    deploy = CommentedMap()
    memory, cpu, count = "2Gi", 2, 1
    _put(deploy, "memory", memory)
    _put(deploy, "cpu", cpu)
    _put(deploy, "timeout", "900s")
    cost = min_instance_cost(Decimal(cpu), rules.parse_memory(memory), str(a.region), count)
    warm = f"no cold-start timeout (about ${cost.monthly:,.2f}/month idle at {cpu} vCPU, {memory})"
    _put(deploy, "min_instances", count, warm)
    doc["deploy"] = deploy
    if a.api_keys:
        doc["secrets"] = CommentedMap((key, f"{secret_id_for(key)}:latest") for key in a.api_keys)
        doc.yaml_add_eol_comment(
            "# ENV_VAR: secret:version (values live in Secret Manager)", "secrets", COMMENT_COLUMN
        )
    title = _one_line(a.description) or a.name
    doc.yaml_set_start_comment(
        f"{title}\nWritten by the quick start (notebooks/00_quickstart.ipynb).\n"
        "`opslib check` on this file validates it against Google's rules."
    )
    yaml = YAML(typ="rt")
    yaml.width = 4096
    return params_file.dump(yaml, doc)


def _schedule(a: Answers) -> CommentedMap:
    schedule = CommentedMap()
    expr = " ".join(str(a.cron).split())
    try:
        cron.validate(expr)
        meaning = cron.describe(expr)
    except RuleBroken:  # the loader reports a bad cron with its line; no comment for it here
        meaning = ""
    _put(schedule, "cron", DoubleQuotedScalarString(expr), meaning)
    _put(schedule, "time_zone", a.time_zone)
    _put(schedule, "attempt_deadline", "900s", "15s-30m, and not above deploy.timeout")
    body = CommentedMap(dry_run=False)
    body.fa.set_flow_style()
    schedule["body"] = body
    return schedule


def _put(mapping: CommentedMap, key: str, value: Any, comment: str = "") -> None:
    mapping[key] = value
    if comment:
        mapping.yaml_add_eol_comment(f"# {_one_line(comment)}", key, COMMENT_COLUMN)


def _one_line(text: object) -> str:
    """Text safe for a YAML comment: one line."""
    return " ".join(str(text).split())


# What the cron picker writes back into the file (opslib.spec.params_file.set_schedule).
PICKER_KEYS = frozenset({"schedule.cron", "schedule.time_zone"})


def write_params(
    path: str | Path, answers: Answers, *, overwrite: bool = False, dry_run: bool = False
) -> Plan:
    """Check, then write the answers to `path`; a different existing file needs `overwrite`."""
    path = Path(path)
    text = render(answers)
    params_file.check_text(text, path)
    plan = Plan()
    if not path.exists():
        plan.add(Change(STEP, str(path), "create", detail=f"job {answers.name}"))
    else:
        old = path.read_text(encoding="utf-8")
        if old == text:
            plan.add(Change(STEP, str(path), "no change"))
            return plan
        fields = _differing(old, text)
        if not overwrite and set(fields) <= PICKER_KEYS:
            # The cron picker saved a schedule into this file since: that choice stands.
            detail = "kept: schedule chosen in the file (cron picker); overwrite=True replaces it"
            plan.add(Change(STEP, str(path), "no change", fields, detail))
            return plan
        if not overwrite:
            raise BadInput(
                str(path),
                f"exists with other content (differs in {', '.join(fields)}); "
                "the quick start does not overwrite it",
                "set overwrite = True to replace it, or choose another name or params path",
            )
        plan.add(Change(STEP, str(path), "update", fields, "overwritten (overwrite=True)"))
    if not dry_run:
        atomic_write(path, text)
    return plan


def _differing(old: str, new: str) -> tuple[str, ...]:
    """The dotted keys whose values differ (keys only: values may be secret references)."""
    try:
        before = _flatten(pyyaml.safe_load(old))
    except pyyaml.YAMLError:
        return ("the whole file (it is not valid YAML)",)
    after = _flatten(pyyaml.safe_load(new))
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return tuple(keys) or ("comments or layout only",)


def _flatten(data: object, prefix: tuple[str, ...] = ()) -> dict[str, object]:
    if isinstance(data, dict) and data:
        return {
            dotted: value
            for key, item in data.items()
            for dotted, value in _flatten(item, (*prefix, str(key))).items()
        }
    return {".".join(prefix) or "(top)": data}


def summary(path: str | Path) -> pd.DataFrame:
    """What the parameters file now says, read back through the loader."""
    return summarize(load_spec(path))
