"""Read a parameters YAML into a `Spec`, or report every broken rule with file, line and fix.

Nothing is written here: checking a spec never changes a file or the cloud.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from opslib.core.errors import HIDDEN, MISSING, BadInput, SpecError, SpecIssue
from opslib.spec import rules as g
from opslib.spec.model import Spec
from opslib.spec.rules import RuleBroken

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
# Refused before parsing: a spec is a few hundred bytes, and every step reads it again.
MAX_BYTES = 256 * 1024
# Values under these keys may be secrets: errors name the key and never print the value.
SECRET_KEYS: tuple[Path_, ...] = (
    ("deploy", "env"),
    ("schedule", "headers"),
    ("schedule", "body"),
    ("secrets",),
)


def load_spec(path: str | Path) -> Spec:
    """The validated spec in `path`; SpecError lists every problem at once."""
    path = Path(path)
    data, lines = _parse_yaml(_read_text(path), path)
    return _validate(data, path, lines)


def load_spec_text(text: str, path: str | Path) -> Spec:
    """The validated spec in `text`, reported as the file `path` (a file about to be written)."""
    path = Path(path)
    _check_size(len(text.encode("utf-8", errors="replace")), path)
    data, lines = _parse_yaml(text, path)
    return _validate(data, path, lines)


def spec_from_mapping(data: dict[str, Any], source: str = "notebook parameters") -> Spec:
    """The validated spec from keys passed another way (papermill `-f parameters/NAME.yaml`)."""
    return _validate(data, Path(source), {})


def _validate(data: dict[str, Any], path: Path, lines: dict[Path_, int]) -> Spec:
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
                SpecIssue(
                    str(path), _line(lines, key), ".".join(key), _shown(key, value), rule, fix
                )
                for key, value, rule, fix in problems
            ],
        )
    return spec


def _read_text(path: Path) -> str:
    """The file's text; a missing, unreadable, too large or non-UTF-8 file is bad input."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # never more: a huge file is refused, not read
        _check_size(len(data), path)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise BadInput(str(path), "no such parameters file", "give the path of a .yaml") from None
    except UnicodeDecodeError as exc:
        raise BadInput(
            str(path),
            f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise BadInput(
            str(path), f"cannot be read: {exc.strerror or exc}", "give the path of a .yaml file"
        ) from None


def key_line(path: Path, key: str) -> int | None:
    """The line of `key` (dotted) in a parameters file, for a message about it; None when the
    file cannot be read again."""
    try:
        _, lines = _parse_yaml(_read_text(path), path)
    except BadInput:
        return None
    return _line(lines, tuple(key.split(".")))


def _check_size(size: int, path: Path) -> None:
    if size > MAX_BYTES:
        raise BadInput(
            str(path),
            f"is over {MAX_BYTES // 1024} KiB; a parameters file is a few hundred bytes",
            "keep one automation's settings in it (data and long text belong elsewhere)",
        )


def _parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], dict[Path_, int]]:
    """Parse once: the node tree gives each key's line, and the data is built from it."""
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        raise BadInput(
            str(path), f"not valid YAML: {exc}", "remove the control characters from the file"
        ) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BadInput(
            where,
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            "fix the YAML syntax (indentation, quotes around cron)",
        ) from None
    finally:
        loader.dispose()
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
    # pydantic marks a bad dict key with "[key]"; the path is the key itself either way.
    key = tuple(str(part) for part in err["loc"] if part != "[key]")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RuleBroken) and cause.key:
        key = (*key, *cause.key.split("."))
    dotted = ".".join(key)
    value = _value_at(data, key) if err["type"] != "missing" else MISSING
    if err["type"] == "extra_forbidden":
        value = HIDDEN  # an unknown key may be a misspelt secret
    rule, fix = _rule_and_fix(err, key, dotted)
    return SpecIssue(str(path), _line(lines, key), dotted, _shown(key, value), rule, fix)


def _shown(key: Path_, value: object) -> object:
    """The value to print for `key`: hidden wherever a secret may live."""
    if value is MISSING or not any(key[: len(s)] == s for s in SECRET_KEYS):
        return value
    return HIDDEN


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
    return [
        *_deadline_checks(spec),
        *_duration_checks(spec),
        *_body_checks(spec),
        *_secret_checks(spec),
        *_account_checks(spec),
    ]


def _deadline_checks(spec: Spec) -> list[Problem]:
    s, d = spec.schedule, spec.deploy
    if s.attempt_deadline <= d.timeout or spec.job.effective_runtime == "job":
        return []
    return [
        (
            ("schedule", "attempt_deadline"),
            g.format_duration(s.attempt_deadline),
            f"the Scheduler attempt deadline must not exceed the Cloud Run request timeout "
            f"({g.format_duration(d.timeout)}): Cloud Run answers 504 first",
            f"raise deploy.timeout to {g.format_duration(s.attempt_deadline)} "
            f"or lower schedule.attempt_deadline to {g.format_duration(d.timeout)}",
        )
    ]


def _duration_checks(spec: Spec) -> list[Problem]:
    s = spec.schedule
    expected, fmt = spec.job.expected_duration, g.format_duration
    key = ("job", "expected_duration")
    if spec.job.effective_runtime == "job":
        return _job_checks(spec)
    shard = [k for k in ("tasks", "parallelism") if k in spec.job.model_fields_set]
    if shard:
        return [
            (
                ("job", shard[0]),
                getattr(spec.job, shard[0]),
                "tasks and parallelism apply to a Cloud Run job (job.runtime: job)",
                f"set job.runtime: job, or remove job.{shard[0]}",
            )
        ]
    if expected is None:
        return []
    if expected > g.ATTEMPT_DEADLINE_MAX:
        return [
            (
                key,
                fmt(expected),
                "work over 30 min cannot finish inside one Scheduler attempt (max 30m), and "
                "job.runtime is service",
                "remove job.runtime: service (opslib then runs it as a Cloud Run job), or split "
                "the job (e.g. one per market)",
            )
        ]
    if expected >= s.attempt_deadline:
        return [
            (
                key,
                fmt(expected),
                f"the job needs longer than the attempt deadline "
                f"({fmt(s.attempt_deadline)}): every run would end in 504",
                f"raise schedule.attempt_deadline above {fmt(expected)} "
                f"(and deploy.timeout with it)",
            )
        ]
    return []


def _job_checks(spec: Spec) -> list[Problem]:
    """A Cloud Run job: the work fits a task, and parallelism fits the tasks."""
    job, fmt = spec.job, g.format_duration
    expected = job.expected_duration
    if expected is not None and expected > g.TASK_TIMEOUT_MAX:
        return [
            (
                ("job", "expected_duration"),
                fmt(expected),
                "a Cloud Run job task runs at most 24h (job.task_timeout); the work cannot "
                "finish inside one task",
                "split the work into tasks that each fit 24h: job.tasks: N (each task reads "
                "CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT to take its share)",
            )
        ]
    problems: list[Problem] = []
    if expected is not None and job.task_timeout is not None and expected >= job.task_timeout:
        problems.append(
            (
                ("job", "task_timeout"),
                fmt(job.task_timeout),
                f"the task timeout must exceed the expected duration ({fmt(expected)}), or "
                "every task is killed",
                f"raise job.task_timeout above {fmt(expected)} (at most 24h)",
            )
        )
    if job.parallelism > job.tasks:
        problems.append(
            (
                ("job", "parallelism"),
                job.parallelism,
                f"parallelism cannot exceed the number of tasks ({job.tasks})",
                f"use parallelism: {job.tasks} or less (0 runs as many as possible)",
            )
        )
    return problems


def notes(spec: Spec) -> list[str]:
    """What `opslib check` says besides errors: choices opslib made for the user."""
    job, found = spec.job, []
    if job.effective_runtime == "job" and job.runtime is None:
        found.append(
            f"job.expected_duration {g.format_duration(job.expected_duration or 0)} is over "
            "Cloud Scheduler's 30 min: it will run as a Cloud Run job (tasks of up to 24h, "
            f"task timeout {g.format_duration(job.effective_task_timeout)}); set job.runtime "
            "to choose"
        )
    if job.effective_runtime == "job" and "attempt_deadline" in spec.schedule.model_fields_set:
        found.append(
            "schedule.attempt_deadline plays no role for a Cloud Run job: Scheduler's call "
            "only starts the execution and returns at once; job.task_timeout bounds the work"
        )
    return found


def _body_checks(spec: Spec) -> list[Problem]:
    s, key = spec.schedule, ("schedule", "body")
    problems: list[Problem] = []
    if s.body and s.http_method not in g.BODY_METHODS:
        problems.append(
            (
                key,
                s.body,
                f"Scheduler sends a body only with {', '.join(g.BODY_METHODS)} "
                f"(http_method is {s.http_method})",
                "remove schedule.body or use http_method: POST",
            )
        )
    extra = sorted(set(s.body) - {"dry_run"})
    if spec.job.pattern == "function" and extra:
        problems.append(
            (
                key,
                s.body,
                f"a function-pattern job only reads dry_run from the body (also given: {extra})",
                "remove those keys, or use job.pattern: class (its run(**kwargs) gets the body)",
            )
        )
    if len(s.body_bytes) >= g.JOB_MAX_BYTES:
        problems.append(
            (
                key,
                s.body,
                "a Scheduler job is at most 1 MB",
                "send a smaller body; put large inputs in Cloud Storage",
            )
        )
    return problems


def _secret_checks(spec: Spec) -> list[Problem]:
    return [
        (
            ("secrets", name),
            spec.secrets[name],
            f"{name} is set both as a plain env var and as a secret",
            f"remove deploy.env.{name} (keep the secret)",
        )
        for name in sorted(set(spec.secrets) & set(spec.deploy.env))
    ]


def _account_checks(spec: Spec) -> list[Problem]:
    account = spec.schedule.service_account
    if not account or g.service_account_project(account) in (None, spec.project):
        return []
    return [
        (
            ("schedule", "service_account"),
            account,
            "the OIDC service account must be in the job's project",
            f"use an account of {spec.project}, e.g. "
            f"scheduler@{spec.project}.iam.gserviceaccount.com",
        )
    ]
