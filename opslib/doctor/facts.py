"""What the doctor reads, once: where the work runs, its IAM, the Scheduler job and the logs.

Every check works from these facts, so one diagnosis costs a handful of API calls. A route job:
a get of the service, the Scheduler job and the service's IAM policy, a list of the service's
revisions (each records the routes it serves). A Cloud Run job (`runtime: job`): a get of the
Cloud Run job and its IAM policy, a list of its newest executions, and the tasks of the few
that had failed or retried tasks. Then one `entries:list` query (newest first, up to LOG_LIMIT
entries) covering the automation's own lines (`steps.logs.resource_clause`: the service's or
the Cloud Run job's tasks') and the job's Scheduler attempts. A call that fails is recorded,
not raised, so one unreadable resource does not hide the other checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from google.api_core import exceptions

from opslib.cloud.clients import Clients
from opslib.cloud.errors import translate
from opslib.cloud.session import Session
from opslib.spec import defaults, names
from opslib.spec import rules as g
from opslib.spec.model import Spec
from opslib.steps import logs
from opslib.steps.verify.job import EXECUTION_LABEL, TASK_LABEL

LOG_LIMIT = 3000  # three entries:list calls at most (1,000 a page; ~60 calls a minute allowed)
RUN_LOGS = ("run.googleapis.com/stdout", "run.googleapis.com/stderr")
REQUESTS_LOG = "run.googleapis.com/requests"
SYSTEM_LOG = "run.googleapis.com/varlog/system"
_EMPTY: dict[str, Any] = {}
ENDS = ("success", "error", "skipped")  # the statuses a run's last line carries
EXECUTIONS = 20  # the newest executions of a Cloud Run job read (one list call)
TASK_READS = 3  # executions with failed or retried tasks whose tasks are read (a call each)


@dataclass
class Facts:
    """One automation's live state and one window of its logs, as the checks read them."""

    spec: Spec
    since: datetime
    now: datetime
    service: Any | None = None
    failed_revision: Any | None = None
    invokers: set[str] | None = None
    job: Any | None = None
    entries: pd.DataFrame = field(default_factory=pd.DataFrame)
    errors: dict[str, str] = field(default_factory=dict)
    job_source: str | None = None
    service_dir: Path | None = None
    revisions: list[Any] | None = None  # the service's revisions, newest first
    params: Path | None = None  # the parameters file, when the caller knows it
    root: Path | None = None  # the project root: the paths and commands a fix shows
    run_job: Any | None = None  # runtime job: the Cloud Run job
    runners: set[str] | None = None  # members holding a role with run.jobs.run on it
    executions: list[Any] | None = None  # its newest executions in the window, newest first
    tasks: dict[str, list[Any]] = field(default_factory=dict)  # by execution (failed/retried)

    @property
    def runtime(self) -> str:
        """`service` (a route Scheduler calls) or `job` (a Cloud Run job it starts)."""
        return self.spec.job.effective_runtime

    @property
    def zone(self) -> str:
        """The job's clock (its schedule.time_zone): every time a finding shows is told on it."""
        return defaults.time_zone(self.spec.schedule.time_zone)

    @property
    def deadline(self) -> float:
        """Scheduler's attempt deadline as live (the spec's when there is no job)."""
        if self.job is None:
            return self.spec.schedule.attempt_deadline
        return self.job.attempt_deadline.total_seconds() or defaults.ATTEMPT_DEADLINE

    @property
    def run_timeout(self) -> float:
        """Cloud Run's request timeout as live (the spec's when there is no service)."""
        if self.service is None:
            return self.spec.deploy.timeout
        return self.service.template.timeout.total_seconds() or defaults.REQUEST_TIMEOUT

    @property
    def min_instances(self) -> int:
        if self.service is None:
            return self.spec.deploy.min_instances
        template = self.service.template.scaling.min_instance_count
        return max(template, self.service.scaling.min_instance_count)

    @property
    def cpu_memory(self) -> tuple[Decimal, int]:
        """The live container's CPU and memory limits (Cloud Run's defaults when unset)."""
        if self.service is None or not self.service.template.containers:
            return self.spec.deploy.cpu, self.spec.deploy.memory
        limits = self.service.template.containers[0].resources.limits
        cpu, memory = limits.get("cpu", defaults.CPU), limits.get("memory", defaults.MEMORY)
        return g.parse_cpu(cpu), g.parse_memory(memory)

    @property
    def route(self) -> str:
        """The path Scheduler calls (the live job's, else the spec's route)."""
        if self.job is not None and self.job.http_target.uri:
            return urlsplit(self.job.http_target.uri).path or "/"
        return self.spec.job.route

    @cached_property
    def attempts(self) -> pd.DataFrame:
        """One row per finished Scheduler attempt: when it started and ended, its outcome."""
        e = self.entries
        if e.empty:
            return pd.DataFrame(columns=["start", "end", "code", "http", "detail", "seconds"])
        mine = e[e["resource_type"] == "cloud_scheduler_job"]
        rows, started = [], None
        for row in mine.itertuples():
            if row.kind == "AttemptStarted":
                started = row.timestamp
            elif row.kind == "AttemptFinished":
                code = row.rpc if isinstance(row.rpc, str) else "OK"
                start = started if started is not None else row.timestamp
                rows.append((start, row.timestamp, code, row.http_status, row.detail))
                started = None
        frame = pd.DataFrame(rows, columns=["start", "end", "code", "http", "detail"])
        if frame.empty:
            return frame.assign(seconds=pd.Series(dtype="float64"))
        frame["seconds"] = (frame["end"] - frame["start"]).dt.total_seconds()
        return frame

    @cached_property
    def requests(self) -> pd.DataFrame:
        """Cloud Run's request logs for the service, with the path each one called."""
        e = self.entries
        if e.empty:
            return e
        frame = e[e["log"] == REQUESTS_LOG].copy()
        frame["path"] = [urlsplit(u).path if isinstance(u, str) else "" for u in frame["url"]]
        return frame

    @cached_property
    def job_requests(self) -> pd.DataFrame:
        """The requests that called the job's route (Scheduler's and people's)."""
        frame = self.requests
        return frame[frame["path"] == self.route] if len(frame) else frame

    @cached_property
    def app(self) -> pd.DataFrame:
        """The service's own lines (stdout and stderr)."""
        e = self.entries
        return e[e["log"].isin(RUN_LOGS)] if len(e) else e

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run of the job (by run_id; a Cloud Run job's: per task attempt): start,
        end, outcome (success, error, or skipped by the overlap guard), duration in seconds."""
        app = self.app
        if app.empty or "run_id" not in app:
            return pd.DataFrame(columns=["run_id", "start", "end", "status", "seconds", "done"])
        mine = app[(app["job"] == self.spec.job.name) & app["run_id"].notna()]
        ends = mine[mine["status"].isin(ENDS)]
        rows = []
        for run_id, lines in mine.groupby("run_id", sort=False):
            start = lines["timestamp"].min()
            end = ends[ends["run_id"] == run_id]
            if len(end):
                last = end.iloc[-1]
                ms = last["duration_ms"]
                seconds = ms / 1000 if pd.notna(ms) else _seconds(last["timestamp"] - start)
                rows.append((run_id, start, last["timestamp"], last["status"], seconds, True))
            else:  # still running (or its end line was lost): it has run at least this long
                rows.append((run_id, start, pd.NaT, "running", _seconds(self._now - start), False))
        return pd.DataFrame(rows, columns=["run_id", "start", "end", "status", "seconds", "done"])

    @cached_property
    def lost_runs(self) -> pd.DataFrame:
        """Runs with no end line long after any request could still be open (a crashed or
        stopped instance); the others without an end line may still be running."""
        runs = self.runs
        limit = 2 * max(self.deadline, self.run_timeout) + 60
        return runs[~runs["done"] & (runs["seconds"] > limit)] if len(runs) else runs

    @property
    def _now(self) -> pd.Timestamp:
        """Now, or the newest entry if the log clock runs ahead (localcloud after an advance)."""
        newest = self.entries["timestamp"].max() if len(self.entries) else pd.NaT
        now = pd.Timestamp(self.now)
        return max(now, newest) if pd.notna(newest) else now

    @cached_property
    def durations(self) -> tuple[pd.Series, str]:
        """How long the job's finished runs took, in seconds, and where that figure comes from."""
        runs = self.runs
        worked = runs[runs["done"] & (runs["status"] != "skipped")] if len(runs) else runs
        done = worked["seconds"].astype("float64") if len(worked) else pd.Series()
        if len(done):
            return done.reset_index(drop=True), "the job's own end lines (duration_ms)"
        served = self.job_requests
        if len(served):
            ok = served[served["http_status"].between(200, 299)]["latency"].dropna()
            if len(ok):
                return ok.reset_index(drop=True), "Cloud Run request latency of the route"
        return pd.Series(dtype="float64"), ""

    @cached_property
    def p95(self) -> float | None:
        values, _ = self.durations
        return float(np.percentile(values, 95)) if len(values) else None


def gather(session: Session, since: timedelta) -> Facts:
    """Read everything the checks need; failures to read are kept in `errors`."""
    spec, clients = session.spec, session.clients
    now = datetime.now(UTC)
    facts = Facts(spec, now - since, now, params=session.params, service_dir=session.service_dir)
    facts.root = session.root
    if facts.runtime == "job":
        _read_run_job(facts, clients)
    else:
        _read_service(facts, clients)
    job = names.scheduler_job(spec)
    facts.job = _get(facts, "job", lambda: clients.scheduler.get_job(name=job))
    try:
        facts.entries = read_entries(clients, spec, facts.since)
    except exceptions.GoogleAPICallError as exc:
        facts.errors["logs"] = _text(exc)
        facts.entries = entries_table([])
    module = session.service_dir / "scripts" / "batch" / f"{spec.job.module}.py"
    facts.job_source = module.read_text() if module.is_file() else None
    return facts


# Roles that carry run.routes.invoke on a service.
INVOKER_ROLES = frozenset(
    {"roles/run.invoker", "roles/run.admin", "roles/run.developer", "roles/owner", "roles/editor"}
)
# Roles that carry run.jobs.run on a Cloud Run job (Cloud Run's IAM roles page).
RUNNER_ROLES = INVOKER_ROLES | {"roles/run.jobsExecutor", "roles/run.jobsExecutorWithOverrides"}


def _read_service(facts: Facts, clients: Clients) -> None:
    """A route job: the service, its newest failed revision, its revisions and invokers."""
    name = names.service(facts.spec)
    facts.service = _get(facts, "service", lambda: clients.run.get_service(name=name))
    if facts.service is None:
        return
    facts.failed_revision = _failed_revision(facts, clients)
    facts.revisions = _get(facts, "revisions", lambda: _revisions(clients, name))
    policy = _get(facts, "iam", lambda: clients.run.get_iam_policy(request={"resource": name}))
    if policy is not None:
        facts.invokers = _members(policy, INVOKER_ROLES)


def _read_run_job(facts: Facts, clients: Clients) -> None:
    """A Cloud Run job: the job, who may run it, its newest executions and, for the newest
    few with failed or retried tasks, their tasks (how each one's last attempt ended)."""
    name = names.run_job(facts.spec)
    facts.run_job = _get(facts, "cloud run job", lambda: clients.jobs.get_job(name=name))
    if facts.run_job is None:
        return
    policy = _get(facts, "iam", lambda: clients.jobs.get_iam_policy(request={"resource": name}))
    if policy is not None:
        facts.runners = _members(policy, RUNNER_ROLES)
    facts.executions = _get(facts, "executions", lambda: _executions(clients, name, facts.since))
    troubled = [e for e in facts.executions or [] if e.failed_count or e.retried_count]
    for execution in troubled[:TASK_READS]:
        parent = execution.name
        found = _get(facts, "tasks", lambda p=parent: list(clients.tasks.list_tasks(parent=p)))
        facts.tasks[parent] = sorted(found or [], key=lambda t: t.index)


def _members(policy: Any, roles: frozenset[str]) -> set[str]:
    return {m for b in policy.bindings if b.role in roles for m in b.members}


def _executions(clients: Clients, job: str, since: datetime) -> list[Any]:
    """The job's newest EXECUTIONS executions that ran in the window, newest first."""
    pages = clients.executions.list_executions(request={"parent": job, "page_size": EXECUTIONS})
    found = sorted(islice(pages, EXECUTIONS), key=lambda e: e.create_time, reverse=True)
    return [e for e in found if not e.completion_time or e.completion_time >= since]


def _get(facts: Facts, what: str, call: Callable[[], Any]) -> Any:
    """One read; a missing resource is None, any other failure is noted under `what`."""
    try:
        return call()
    except exceptions.NotFound:
        return None
    except exceptions.GoogleAPICallError as exc:
        facts.errors[what] = _text(exc)
        return None


def _failed_revision(facts: Facts, clients: Clients) -> Any | None:
    """The newest revision when it never became ready (traffic stayed on an older one)."""
    service = facts.service
    created, ready = service.latest_created_revision, service.latest_ready_revision
    if not created or created == ready:
        return None
    revision = _get(facts, "revision", lambda: clients.revisions.get_revision(name=created))
    if revision is None:
        return None
    failed = [c for c in revision.conditions if c.state.name == "CONDITION_FAILED"]
    return revision if failed else None


def _revisions(clients: Clients, service: str) -> list[Any]:
    """Every revision of the service, newest first: which routes each one shipped."""
    found = clients.revisions.list_revisions(parent=service)
    return sorted(found, key=lambda r: r.create_time, reverse=True)


def log_filter(spec: Spec, since: datetime) -> str:
    """The automation's own lines (its service's, or its Cloud Run job's tasks') and the job's
    Scheduler attempts in one query, DEBUG lines left out."""
    own = " AND ".join(logs.resource_clause(spec))
    job = logs.quote(spec.job.name)
    stamp = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return (
        f'timestamp>="{stamp}" AND NOT severity=DEBUG AND '
        f'(({own}) OR (resource.type="cloud_scheduler_job" AND resource.labels.job_id={job}))'
    )


def read_entries(clients: Clients, spec: Spec, since: datetime) -> pd.DataFrame:
    """The newest LOG_LIMIT entries of the window, oldest first, as the doctor's table."""
    body = {
        "resourceNames": [names.project(spec)],
        "filter": log_filter(spec, since),
        "orderBy": "timestamp desc",
        "pageSize": logs.PAGE_SIZE,
    }
    entries = logs.fetch_entries(clients.logging._connection, body, LOG_LIMIT)
    return entries_table(entries[::-1])


def entries_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The logs' columns plus what the checks need: instance, request, attempt, run fields."""
    frame = logs.entries_frame(entries)
    payloads = [e.get("jsonPayload") or _EMPTY for e in entries]
    requests = [e.get("httpRequest") or _EMPTY for e in entries]
    kinds = [str(p.get("@type", "")).rpartition(".")[2] or None for p in payloads]
    frame["resource_type"] = [(e.get("resource") or _EMPTY).get("type") for e in entries]
    labels = [e.get("labels") or _EMPTY for e in entries]
    frame["instance"] = [label.get("instanceId") for label in labels]
    frame["execution"] = [label.get(EXECUTION_LABEL) for label in labels]  # a Cloud Run job's
    frame["task"] = pd.to_numeric(
        pd.Series([label.get(TASK_LABEL) for label in labels], dtype=object), errors="coerce"
    )
    frame["text"] = [e.get("textPayload") for e in entries]
    frame["kind"] = kinds
    frame["rpc"] = [
        p.get("status") if k and k.startswith("Attempt") else None
        for p, k in zip(payloads, kinds, strict=True)
    ]
    frame["detail"] = [p.get("debugInfo") for p in payloads]
    frame["http_status"] = pd.to_numeric(
        pd.Series([h.get("status") for h in requests], dtype=object), errors="coerce"
    )
    frame["url"] = [
        h.get("requestUrl") or p.get("url") for h, p in zip(requests, payloads, strict=True)
    ]
    frame["user_agent"] = [h.get("userAgent") for h in requests]
    frame["run_id"] = [p.get("run_id") for p in payloads]
    frame["logger"] = [p.get("logger") for p in payloads]
    frame["app_status"] = pd.to_numeric(
        pd.Series([p.get("status") for p in payloads], dtype=object), errors="coerce"
    )
    frame["duration_ms"] = pd.to_numeric(
        pd.Series([p.get("duration_ms") for p in payloads], dtype=object), errors="coerce"
    )
    return frame


def _seconds(delta: Any) -> float:
    return float(delta.total_seconds()) if pd.notna(delta) else float("nan")


def _text(exc: exceptions.GoogleAPICallError) -> str:
    return translate(exc, "", "run").what
