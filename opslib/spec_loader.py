"""Read a parameters YAML into a `Spec`, or report every broken rule with file, line and fix.

Nothing is written here: checking a spec never changes a file or the cloud.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from opslib import gcp_rules as g
from opslib.errors import MISSING, BadInput, SpecError, SpecIssue
from opslib.gcp_rules import RuleBroken
from opslib.spec import Spec

EXAMPLES = {
    "project": "my-project-123",
    "region": "asia-northeast3",
    "service": "batch-service",
    "job": "{name: fx-rates}",
    "job.name": "fx-rates",
    "schedule": '{cron: "0 9 * * 1-5", time_zone: Asia/Seoul}',
    "schedule.cron": '"0 9 * * 1-5"',
}

Path_ = tuple[str, ...]


def load_spec(path: str | Path) -> Spec:
    """The validated spec in `path`; SpecError lists every problem at once."""
    path = Path(path)
    data, lines = _read_yaml(path)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(path, lines, data, err) for err in exc.errors()]
        raise SpecError(str(path), issues) from None
    problems = cross_checks(spec)
    if problems:
        raise SpecError(
            str(path),
            [
                SpecIssue(str(path), _line(lines, key), ".".join(key), value, rule, fix)
                for key, value, rule, fix in problems
            ],
        )
    return spec


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[Path_, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(str(path), "no such parameters file", "give the path of a .yaml") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BadInput(
            where,
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            "fix the YAML syntax (indentation, quotes around cron)",
        ) from None
    if not isinstance(data, dict):
        raise BadInput(str(path), "the file must be a YAML mapping of keys", "see example.yaml")
    lines: dict[Path_, int] = {}
    _index(node, (), lines, path)
    return data, lines


def _index(node: yaml.Node, key: Path_, lines: dict[Path_, int], path: Path) -> None:
    """Map each key path to its line; a key given twice is an error (PyYAML keeps the last)."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        name = str(key_node.value)
        if name in seen:
            raise BadInput(
                f"{path}:{key_node.start_mark.line + 1}",
                f"the key {'.'.join((*key, name))} is given twice",
                "keep one of them",
            )
        seen.add(name)
        lines[(*key, name)] = key_node.start_mark.line + 1
        _index(value_node, (*key, name), lines, path)


def _line(lines: dict[Path_, int], key: Path_) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def _value_at(data: Any, key: Path_) -> object:
    for part in key:
        if not isinstance(data, dict) or part not in data:
            return MISSING
        data = data[part]
    return data


def _issue(path: Path, lines: dict[Path_, int], data: dict, err: dict) -> SpecIssue:
    key = tuple(str(part) for part in err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RuleBroken) and cause.key:
        key = (*key, cause.key)
    dotted = ".".join(key)
    value = _value_at(data, key) if err["type"] != "missing" else MISSING
    rule, fix = _rule_and_fix(err, key, dotted)
    return SpecIssue(str(path), _line(lines, key), dotted, value, rule, fix)


def _rule_and_fix(err: dict, key: Path_, dotted: str) -> tuple[str, str]:
    kind, ctx = err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, RuleBroken):
        return cause.rule, cause.fix
    if kind == "extra_forbidden":
        known = _known_keys(key[:-1])
        hint = g.suggest(key[-1], known)
        return (
            f"unknown key{hint}; keys here: {', '.join(sorted(known))}",
            f"remove {dotted}" + (f" or rename it{hint}" if hint else ""),
        )
    if kind == "missing":
        return "a required key", f"add {dotted}: {EXAMPLES.get(dotted, '...')}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}", f"use one of {ctx.get('expected')}"
    return err["msg"], f"give {dotted} a valid value ({err['msg'].lower()})"


def _known_keys(key: Path_) -> list[str]:
    model: type[BaseModel] | None = Spec
    for part in key:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return list(model.model_fields) if model else []


Problem = tuple[Path_, object, str, str]


def cross_checks(spec: Spec) -> list[Problem]:
    """Rules that tie two keys together; each problem names the key to change."""
    problems: list[Problem] = []
    s, d, job = spec.schedule, spec.deploy, spec.job
    if s.attempt_deadline > d.timeout:
        problems.append(
            (
                ("schedule", "attempt_deadline"),
                g.format_duration(s.attempt_deadline),
                f"the Scheduler attempt deadline must not exceed the Cloud Run request timeout "
                f"({g.format_duration(d.timeout)}): Cloud Run answers 504 first",
                f"raise deploy.timeout to {g.format_duration(s.attempt_deadline)} "
                f"or lower schedule.attempt_deadline to {g.format_duration(d.timeout)}",
            )
        )
    problems += _duration_checks(spec)
    if s.body and s.http_method not in g.BODY_METHODS:
        problems.append(
            (
                ("schedule", "body"),
                s.body,
                f"Scheduler sends a body only with {', '.join(g.BODY_METHODS)} "
                f"(http_method is {s.http_method})",
                "remove schedule.body or use http_method: POST",
            )
        )
    extra = sorted(set(s.body) - {"dry_run"})
    if job.pattern == "function" and extra:
        problems.append(
            (
                ("schedule", "body"),
                s.body,
                f"a function-pattern job only reads dry_run from the body (also given: {extra})",
                "remove those keys, or use job.pattern: class (its run(**kwargs) gets the body)",
            )
        )
    if len(s.body_bytes) >= g.JOB_MAX_BYTES:
        problems.append(
            (
                ("schedule", "body"),
                "...",
                "a Scheduler job is at most 1 MB",
                "send a smaller body; put large inputs in Cloud Storage",
            )
        )
    problems += _deploy_checks(spec)
    return problems


def _duration_checks(spec: Spec) -> list[Problem]:
    s = spec.schedule
    expected, fmt = spec.job.expected_duration, g.format_duration
    problems: list[Problem] = []
    if expected is None:
        return problems
    key = ("job", "expected_duration")
    if expected > g.ATTEMPT_DEADLINE_MAX:
        problems.append(
            (
                key,
                fmt(expected),
                "work over 30 min cannot finish inside one Scheduler attempt (max 30m)",
                "split the job (e.g. one per market), or run it as a Cloud Run job",
            )
        )
    elif expected >= s.attempt_deadline:
        problems.append(
            (
                key,
                fmt(expected),
                f"the job needs longer than the attempt deadline "
                f"({fmt(s.attempt_deadline)}): every run would end in 504",
                f"raise schedule.attempt_deadline above {fmt(expected)} "
                f"(and deploy.timeout with it)",
            )
        )
    return problems


def _deploy_checks(spec: Spec) -> list[Problem]:
    d = spec.deploy
    problems: list[Problem] = []
    for name in sorted(set(spec.secrets) & set(d.env)):
        problems.append(
            (
                ("secrets", name),
                spec.secrets[name],
                f"{name} is set both as a plain env var and as a secret",
                f"remove deploy.env.{name} (keep the secret)",
            )
        )
    account = spec.schedule.service_account
    if account and spec.project not in account.split("@")[1] and "compute@developer" not in account:
        problems.append(
            (
                ("schedule", "service_account"),
                account,
                "the OIDC service account must be in the job's project",
                f"use an account of {spec.project}, e.g. "
                f"scheduler@{spec.project}.iam.gserviceaccount.com",
            )
        )
    return problems
