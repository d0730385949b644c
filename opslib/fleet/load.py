"""A project's automations as one set: parameters files grouped by the Cloud Run service they share.

The seed's model is one `batch_endpoint.py` serving many jobs. Every automation naming a
service (project, region, service id) shares that service's source folder and its single
deploy, so a fleet is checked as a whole before anything runs: one folder per service, one
scheduler job id per job, one set of resources per service, and env vars or secrets that do
not contradict each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from opslib.cloud.session import Session, open_session
from opslib.core.errors import BadInput
from opslib.spec import names
from opslib.spec.loader import key_line, load_spec
from opslib.spec.model import Spec
from opslib.spec.project import locate, params_files
from opslib.spec.rules import format_duration
from opslib.steps.endpoint.folder import ensure_service_dir

ServiceKey = tuple[str, str, str]  # (project, region, service)
# The deploy settings every automation on one service must agree on (the service has one).
SHARED_DEPLOY = ("memory", "cpu", "timeout", "min_instances", "max_instances", "concurrency")


@dataclass
class Fleet:
    """The automations of one run, each with its session, grouped by service."""

    sessions: list[Session]
    _members: dict[ServiceKey, list[Session]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check(self.sessions)

    def service_members(self, key: ServiceKey) -> list[Session]:
        """The route jobs a service serves, as step 3 deploys it and status compares it: this
        fleet's, then the other files in their parameters folders naming the service. Step 3
        ships the whole folder, so it must mount every job's env, secrets and invokers, not
        only those of the files given (the one rule for `run`, `deploy`, `status`, `destroy`).
        """
        if key not in self._members:
            given = [s for s in self.services.get(key, []) if _routed(s)]
            self._members[key] = given + _siblings(given, {s.params for s in self.sessions})
            problems = _shared_settings(self._members[key])
            if problems:
                raise BadInput(
                    "parameters",
                    f"{len(problems)} conflict(s) between automations of service {key[2]}:\n"
                    + "\n".join(f"- {p}" for p in problems),
                    "automations on one service share its deploy settings; change the files",
                )
        return self._members[key]

    @property
    def services(self) -> dict[ServiceKey, list[Session]]:
        """Sessions by the service they run on, in the order the files were given."""
        groups: dict[ServiceKey, list[Session]] = {}
        for session in self.sessions:
            groups.setdefault(session.spec.service_key, []).append(session)
        return groups

    @property
    def time_zone(self) -> str:
        """The zone tables show times in: the first automation's (they usually share one)."""
        return self.sessions[0].spec.schedule.time_zone

    @property
    def service_dirs(self) -> list[Path]:
        return list(dict.fromkeys(s.service_dir for s in self.sessions))

    def jobs(self) -> pd.DataFrame:
        """Which automation runs where, from which file: the fleet at a glance."""
        rows = [
            {
                "job": s.spec.job.name,
                "service": s.spec.service,
                "region": s.spec.region,
                "cron": s.spec.schedule.cron,
                "time_zone": s.spec.schedule.time_zone,
                "folder": _shown(s.service_dir, s.root),
                "params": _shown(s.params, s.root),
            }
            for s in self.sessions
        ]
        return pd.DataFrame(rows)

    def ensure_service_dirs(self, fresh: bool = False) -> list[Path]:
        """Each service's folder exists once (a workspace copy is made once, not per job)."""
        done: dict[Path, None] = {}
        for session in self.sessions:
            if session.service_dir not in done:
                ensure_service_dir(session, fresh=fresh)
                done[session.service_dir] = None
        return list(done)


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def open_fleet(
    params: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    target: str | None = None,
    service_dir: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | None = None,
    **spec_keys: object,
) -> Fleet:
    """Every automation in `params` (files, folders, or one spec's keys from papermill -f)."""
    one_spec = any(v is not None for v in spec_keys.values())
    one_file = isinstance(params, str | os.PathLike) and not locate(Path(params)).is_dir()
    if one_spec or one_file:
        return Fleet([open_session(params, target, service_dir, workspace, **spec_keys)])
    files = params_files(params if params is not None else [])
    if service_dir and len(files) > 1:
        raise BadInput(
            "service_dir",
            f"one folder ({service_dir}) was given for {len(files)} automations",
            "leave service_dir unset: each spec's own service_dir names its service's folder",
        )
    return Fleet([open_session(p, target, service_dir, workspace) for p in files])


def check(sessions: Iterable[Session]) -> None:
    """The rules that tie several automations together; every problem at once, nothing changed."""
    sessions = list(sessions)
    problems = [*_same_job(sessions), *_folders(sessions), *_shared_settings(sessions)]
    if problems:
        raise BadInput(
            "parameters",
            f"{len(problems)} conflict(s) between automations:\n"
            + "\n".join(f"- {p}" for p in problems),
            "automations on one service share its folder and its deploy settings; "
            "change the files named above",
        )


def at(session: Session, key: str) -> str:
    """`parameters/a.yaml:7`: the file (from the project root) and the line of `key` in it."""
    shown = _shown(session.params, session.root)
    line = key_line(session.params, key) if session.params.is_file() else None
    return f"{shown}:{line}" if line else shown


def _same_job(sessions: list[Session]) -> list[str]:
    seen: dict[tuple[str, str, str], Session] = {}
    problems = []
    for s in sessions:
        key = (s.spec.project, s.spec.region, s.spec.job.name)
        if key in seen:
            problems.append(
                f"{at(seen[key], 'job.name')} and {at(s, 'job.name')} both name job "
                f"{key[2]!r} in {key[0]}/{key[1]}: one Scheduler job id (and one route) per job; "
                "rename one job.name"
            )
        seen.setdefault(key, s)
    return problems


def _folders(sessions: list[Session]) -> list[str]:
    by_folder: dict[Path, Session] = {}
    by_service: dict[ServiceKey, Session] = {}
    problems = []
    for s in sessions:
        other = by_folder.setdefault(s.service_dir, s)
        if other.spec.service_key != s.spec.service_key:
            problems.append(
                f"{at(other, 'service')} ({other.spec.service}) and {at(s, 'service')} "
                f"({s.spec.service}) both use the folder {s.spec.service_dir}: one folder ships "
                f"one service; set service_dir: services/{s.spec.service} in "
                f"{_shown(s.params, s.root)}"
            )
        first = by_service.setdefault(s.spec.service_key, s)
        if first.service_dir != s.service_dir:
            problems.append(
                f"{at(first, 'service_dir')} and {at(s, 'service_dir')} name service "
                f"{s.spec.service} with different folders ({first.spec.service_dir}, "
                f"{s.spec.service_dir}): a service is built from one folder; use the same "
                "service_dir in both"
            )
    return problems


def _shared_settings(sessions: list[Session]) -> list[str]:
    problems = []
    groups: dict[ServiceKey, list[Session]] = {}
    for s in sessions:
        groups.setdefault(s.spec.service_key, []).append(s)
    for group in groups.values():
        # Route jobs share the service's settings; a Cloud Run job has its own resources.
        group = [s for s in group if s.spec.job.effective_runtime == "service"] or group[:1]
        first = group[0]
        for s in group[1:]:
            for key in SHARED_DEPLOY:
                mine, theirs = _setting(s.spec, key), _setting(first.spec, key)
                if mine != theirs:
                    problems.append(
                        f"deploy.{key} is {theirs} in {at(first, f'deploy.{key}')} but {mine} "
                        f"in {at(s, f'deploy.{key}')}; both run on service {s.spec.service}, "
                        "which has one setting: use the same value in both"
                    )
        problems += _mounts(group)
    return problems


def _mounts(group: list[Session]) -> list[str]:
    """Env vars and secrets of one container: the same name means the same value everywhere."""
    problems: list[str] = []
    first: dict[str, tuple[Session, str, str]] = {}
    for s in group:
        named = [("deploy.env", k, v) for k, v in s.spec.deploy.env.items()]
        named += [("secrets", k, v) for k, v in s.spec.secrets.items()]
        for section, name, value in named:
            seen = first.setdefault(name, (s, section, value))
            if seen[1:] != (section, value):
                kind = "the same value" if seen[1] == section else "one of env or secrets"
                problems.append(
                    f"{name} is {seen[1]}.{name} in {at(seen[0], f'{seen[1]}.{name}')} and "
                    f"{section}.{name} in {at(s, f'{section}.{name}')}, differently; they share "
                    f"service {s.spec.service}'s one container: give them {kind}, or "
                    "different names"
                )
    return problems


def _setting(spec: Spec, key: str) -> str:
    """A deploy setting as the user wrote it (2Gi, 900s), for comparing and for messages."""
    d = spec.deploy
    shown = {"memory": d.memory_text, "timeout": format_duration(d.timeout)}
    return shown.get(key, str(getattr(d, key)))


def service_spec(specs: Sequence[Spec]) -> Spec:
    """The spec step 3 deploys for a service: the first automation's, with every job's env and
    secrets (the service serves all of them)."""
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for spec in specs:
        pairs = ((env, spec.deploy.env, "env var"), (secrets, spec.secrets, "secret"))
        for mine, theirs, kind in pairs:
            for name, value in theirs.items():
                if mine.setdefault(name, value) != value:
                    raise BadInput(
                        "parameters",
                        f"{kind} {name} differs between automations of service {spec.service}; "
                        f"they share one container: give them the same value or different names",
                    )
    overlap = sorted(set(env) & set(secrets))
    if overlap:
        raise BadInput(
            "parameters",
            f"{', '.join(overlap)} is a plain env var in one automation and a secret in another "
            f"of service {specs[0].service}: keep one",
        )
    first = specs[0]
    if any(s.job.overlap != "allow" for s in specs):  # the routes' lease guard needs its bucket
        env[LEASE_ENV] = names.lease_bucket(first.project)
    deploy = first.deploy.model_copy(update={"env": env})
    return first.model_copy(update={"deploy": deploy, "secrets": secrets})


LEASE_ENV = "OPSLIB_LEASE_BUCKET"


def job_spec(spec: Spec) -> Spec:
    """A Cloud Run job's spec with what its tasks need to guard against overlap."""
    env = {**spec.deploy.env, "OPSLIB_OVERLAP": spec.job.overlap, "OPSLIB_REGION": spec.region}
    return spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"env": env})})


def invokers(specs: Sequence[Spec]) -> list[str]:
    """Every account that calls the service (each job's OIDC account)."""
    return sorted({s.invoker_account for s in specs})


def _routed(session: Session) -> bool:
    return session.spec.job.effective_runtime == "service"


def _siblings(given: list[Session], known: set[Path]) -> list[Session]:
    """The other route jobs of the given ones' service in the same parameters folders.

    A file that does not load is left out here: it cannot be deployed as it is, and
    `opslib check` on the folder names what is wrong with it.
    """
    if not given:
        return []
    first, found = given[0], []
    for folder in dict.fromkeys(s.params.parent for s in given):
        for path in params_files(folder) if folder.is_dir() else []:
            if path in known:
                continue
            try:
                other = load_spec(path)
            except BadInput:
                continue
            if other.service_key == first.spec.service_key and other.job.effective_runtime == (
                "service"
            ):
                found.append(
                    open_session(path, first.spec.target, first.service_dir, first.workspace)
                )
    return found
