"""Steps 1-5 over a fleet: what the step notebooks call, for one automation or many.

Steps 1-2 write every job into its service's shared folder; step 3 deploys each service once,
with every job's env, secrets and invokers (and the preflight against live Scheduler jobs);
steps 4-5 schedule and verify each job. Each function returns one table with a `job` (or
`service`) column, so a notebook shows one automation and fifty the same way.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.cloud.session import Session
from opslib.core.errors import OpslibError
from opslib.doctor import explain
from opslib.fleet.load import Fleet, invokers, job_spec, service_spec
from opslib.spec import cron
from opslib.spec.model import Spec
from opslib.spec.project import typed
from opslib.steps import scaffold
from opslib.steps import schedule as scheduler
from opslib.steps.deploy import job as deploy_job
from opslib.steps.deploy import live as deploy_live
from opslib.steps.deploy import service as cloud_run
from opslib.steps.deploy.preflight import Prune
from opslib.steps.endpoint import check as local_checks
from opslib.steps.endpoint import patch as endpoint_step
from opslib.steps.verify import Verdict


def _per_job(fleet: Fleet, frame_of: Callable[[Session], pd.DataFrame]) -> pd.DataFrame:
    frames = [frame_of(s).assign(job=s.spec.job.name) for s in fleet.sessions]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame[["job", *[c for c in frame.columns if c != "job"]]] if len(frame) else frame


def write_functions(fleet: Fleet) -> pd.DataFrame:
    """Step 1 for each job; a module you edited is kept."""
    fleet.ensure_service_dirs()
    return _per_job(
        fleet,
        lambda s: scaffold.scaffold(s.spec, s.service_dir, keep_edited=True).to_frame(),
    )


def job_sources(fleet: Fleet) -> str:
    """Each job's module, headed by its path: where the business logic goes."""
    parts = []
    for s in fleet.sessions:
        path = scaffold.module_path(s.spec, s.service_dir)
        parts.append(f"# ---- {path}\n{path.read_text()}")
    return "\n".join(parts)


def patch_endpoints(fleet: Fleet) -> pd.DataFrame:
    """Step 2 for each job, into its service's shared endpoint file."""
    fleet.ensure_service_dirs()
    return _per_job(fleet, lambda s: endpoint_step.patch_endpoint(s.spec, s.service_dir).to_frame())


def checklist(fleet: Fleet) -> pd.DataFrame:
    """The endpoint checklist over every route of every service folder (raises on a finding)."""
    return pd.concat(
        [local_checks.checklist(folder) for folder in fleet.service_dirs], ignore_index=True
    )


def unit_tests(fleet: Fleet) -> pd.DataFrame:
    """Each job's generated test, in its service folder."""
    rows = [
        {"job": s.spec.job.name, "result": local_checks.unit_test(s.spec, s.service_dir)}
        for s in fleet.sessions
    ]
    return pd.DataFrame(rows, columns=["job", "result"])


def call_routes(fleet: Fleet) -> pd.DataFrame:
    """One local gunicorn per service folder, each job's route called as Scheduler will."""
    rows = []
    for folder, sessions in _by_folder(fleet).items():
        answers = local_checks.call_routes([s.spec for s in sessions], folder)
        pairs = zip(sessions, answers, strict=True)
        rows += [{"job": s.spec.job.name, "answer": a} for s, a in pairs]
    return pd.DataFrame(rows, columns=["job", "answer"])


def _by_folder(fleet: Fleet) -> dict[Path, list[Session]]:
    groups: dict[Path, list[Session]] = {}
    for session in fleet.sessions:
        groups.setdefault(session.service_dir, []).append(session)
    return groups


@dataclass
class Deployed:
    """Step 3 over the fleet: each service's plan and where its traffic goes now."""

    plan: pd.DataFrame
    status: pd.DataFrame


def deploy(
    fleet: Fleet, progress: bool = True, prune: Prune = "", dry_run: bool = False
) -> Deployed:
    """Step 3: every service and Cloud Run job planned and checked first, then each service
    folder built once and shipped (the service for route jobs, a Cloud Run job per job)."""
    planned = [_plan_group(fleet, sessions, prune, dry_run) for sessions in fleet.services.values()]
    plans, statuses = [], []
    for group in planned:
        plans.append(group.frame())
        if not dry_run:
            statuses.append(group.apply(progress, prune))
    return Deployed(_service_first(plans), _service_first(statuses))


@dataclass
class _Group:
    """One service folder: its service plan (route jobs) and its Cloud Run job plans."""

    spec: Spec
    clients: Any
    source: cloud_run.Source
    image: str
    service: cloud_run.DeployPlan | None
    jobs: list[tuple[Spec, deploy_job.JobPlan]]

    def frame(self) -> pd.DataFrame:
        plans = ([self.service.plan] if self.service else []) + [jp.plan for _, jp in self.jobs]
        frames = [p.to_frame() for p in plans]
        return pd.concat(frames, ignore_index=True).assign(service=self.spec.service)

    def apply(self, progress: bool, prune: Prune) -> pd.DataFrame:
        status = pd.DataFrame()
        if self.service is not None:  # builds the image when the service needs it
            status = cloud_run.apply(self.spec, self.clients, self.service, progress, prune)
        built = self.service is not None
        for spec, jp in self.jobs:
            needs_image = jp.live is None or jp.plan.changes[0].action != "no change"
            if needs_image and not built:
                cloud_run.build(spec, self.clients, self.source, self.image, progress)
                built = True
            deploy_job.apply(spec, self.clients, jp, progress)
        return status.assign(service=self.spec.service)


def _plan_group(fleet: Fleet, sessions: list[Session], prune: Prune, dry_run: bool) -> _Group:
    first = sessions[0]
    clients = first.clients
    members = fleet.service_members(first.spec.service_key)
    routed = [s.spec for s in members]
    jobs = [s.spec for s in sessions if s.spec.job.effective_runtime == "job"]
    source = cloud_run.pack(first.service_dir)
    image = cloud_run.image_for(first.spec, source)
    service = None
    if routed:
        merged = service_spec(routed)
        rerun = rerun_command([s.params for s in members], first, "1-3")
        service = cloud_run.checked_plan(
            merged, first.service_dir, clients, invokers(routed), prune, dry_run, source, rerun
        )
    job_plans = [(job_spec(s), deploy_job.plan(job_spec(s), image, clients)) for s in jobs]
    return _Group(first.spec, clients, source, image, service, job_plans)


def rerun_command(files: list[Path], session: Session, steps: str) -> str:
    """`opslib run FILES --steps N-M [--workspace W]`: the files as the user can type them
    from here, in the workspace they work in."""
    root, space = session.root, session.workspace
    words = ["opslib", "run", *(typed(f, root) for f in files), "--steps", steps]
    return shlex.join(words + (["--workspace", typed(space, root)] if space else []))


def _service_first(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "service" not in frame.columns:
        return frame
    return frame[["service", *[c for c in frame.columns if c != "service"]]]


def revisions(fleet: Fleet, limit: int = 3) -> pd.DataFrame:
    """The newest revisions of each service, with their share of traffic."""
    frames = [
        deploy_live.revisions_frame(ss[0].spec, ss[0].clients, limit).assign(
            service=ss[0].spec.service
        )
        for ss in fleet.services.values()
        if any(s.spec.job.effective_runtime == "service" for s in ss)  # a job-only folder: none
    ]
    return _service_first(frames)


def schedule(fleet: Fleet) -> pd.DataFrame:
    """Step 4 for each job."""
    return _per_job(fleet, lambda s: scheduler.schedule(s.spec, s.clients).to_frame())


def scheduler_jobs(fleet: Fleet) -> pd.DataFrame:
    return _per_job(fleet, lambda s: scheduler.job_frame(s.spec, s.clients))


def next_runs(fleet: Fleet, count: int = cron.NEXT_RUNS) -> pd.DataFrame:
    return _per_job(fleet, lambda s: scheduler.next_runs_frame(s.spec, count))


@dataclass
class FleetVerdict:
    """Step 5 over the fleet: one verdict per job, passed only when every job passed."""

    verdicts: dict[str, Verdict]
    time_zone: str = "UTC"  # the banner's clock: the jobs' own

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts.values())

    @property
    def checks(self) -> pd.DataFrame:
        return _frames({j: v.checks for j, v in self.verdicts.items()})

    @property
    def logs(self) -> pd.DataFrame:
        return _frames({j: v.logs for j, v in self.verdicts.items()})

    @property
    def tasks(self) -> pd.DataFrame:
        """The Cloud Run jobs' tasks, one row each (route jobs have none)."""
        return _frames({j: v.tasks for j, v in self.verdicts.items()})

    def summary(self) -> pd.DataFrame:
        """One row per job: its verdict and the scheduler attempt's status."""
        rows = [
            {"job": j, "verify": "PASSED" if v.passed else "FAILED", "attempt": v.attempt}
            for j, v in self.verdicts.items()
        ]
        return pd.DataFrame(rows, columns=["job", "verify", "attempt"])


def _frames(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = [  # every row names its job, the request log's row too
        f.assign(job=f["job"].where(f["job"].notna(), j) if "job" in f.columns else j)
        for j, f in frames.items()
        if len(f)
    ]
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True)
    return frame[["job", *[c for c in frame.columns if c != "job"]]]


def verify(fleet: Fleet, progress: bool = True) -> FleetVerdict:
    """Step 5: run each job now and judge its run (every job, even after one fails)."""
    return FleetVerdict(
        {s.spec.job.name: explain.verify(s, progress=progress) for s in fleet.sessions},
        fleet.time_zone,
    )


def save(result: FleetVerdict, path: str | Path | None) -> None:
    """Keep each job's verdict and checks where the runner reads them (no-op without a path)."""
    if path is None:
        return
    data = {
        "passed": result.passed,
        "jobs": {
            job: {
                "passed": v.passed,
                "attempt": v.attempt,
                "checks": v.checks.to_dict(orient="records"),
                "log_lines": len(v.logs),
            }
            for job, v in result.verdicts.items()
        },
    }
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def verdict(result: FleetVerdict) -> Any:
    """The step's one-line result: PASSED / FAILED, which jobs, their run ids, the time."""
    from opslib.core.display import banner

    jobs = ", ".join(result.verdicts)
    run_ids = ", ".join(r for v in result.verdicts.values() for r in v.run_ids[:1])
    failed = [f"{j} ({v.attempt})" for j, v in result.verdicts.items() if not v.passed]
    detail = f"failed: {', '.join(failed)}" if failed else ""
    status = "failed" if failed else "passed"
    return banner(status, f"verify {jobs}", run_ids, detail=detail, time_zone=result.time_zone)


def require_passed(result: FleetVerdict) -> None:
    """Show the verdict, then raise unless every job passed, naming each failed one."""
    from opslib.core.display import show

    show(verdict(result))
    failures = []
    for job, one in result.verdicts.items():
        try:
            explain.require_passed(one)
        except OpslibError as exc:
            failures.append(f"[{job}] {exc.what}")
    if failures:
        raise OpslibError(
            "verify",
            f"{len(failures)} of {len(result.verdicts)} job(s) failed:\n" + "\n".join(failures),
            "follow the fix in each failed check; `opslib doctor PARAMS.yaml` diagnoses it",
        )
