"""A new service's source folder: the project's `service/` without its jobs.

A spec naming another Cloud Run service (with its own `service_dir`) gets a folder of its own,
made on first use from the user's `service/` (so their logging, helpers, Dockerfile and
requirements carry over) with nothing of another service's jobs: every job route, index()
entry, job module (a Cloud Run job's entry module too) and job test removed.
`ensure_service_dir` makes the folder a session's steps write: that new folder, or in a
workspace a copy of the project's, made once.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from opslib.core.errors import BadInput
from opslib.spec.model import JOB_NAME, Job
from opslib.steps.endpoint import patch as endpoint

if TYPE_CHECKING:
    from opslib.cloud.session import Session

COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
ROUTE_PREFIX = "/run-"


def job_routes(service_dir: Path) -> list[Job]:
    """The jobs whose routes step 2 wrote (`/run-<name>`) in the folder's endpoint file."""
    info = endpoint.load(Path(service_dir) / endpoint.ENDPOINT_FILE)
    names = [r.path.removeprefix(ROUTE_PREFIX) for r in info.routes]
    return [
        Job(name=name)
        for route, name in zip(info.routes, names, strict=True)
        if route.path.startswith(ROUTE_PREFIX) and JOB_NAME.fullmatch(name)
    ]


def new_service_folder(skeleton: Path, target: Path) -> Path:
    """Copy `skeleton` to `target` (made whole or not at all), then remove every job from it."""
    from opslib.steps.endpoint import remove as endpoint_remove

    if not (skeleton / endpoint.ENDPOINT_FILE).is_file():
        raise BadInput(
            str(target),
            f"does not exist, and there is no {skeleton}/{endpoint.ENDPOINT_FILE} to start it from",
            "create the folder (a copy of the seed's service/), or fix service_dir in the spec",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(skeleton, staging, ignore=COPY_IGNORE)
    try:
        for job in job_routes(staging):
            endpoint_remove.remove_job(job, staging)
        _drop_job_modules(staging)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _drop_job_modules(folder: Path) -> None:
    """What is left of other services' jobs without a route (Cloud Run jobs' entry modules,
    and any module or test step 1 wrote): scripts/batch/ keeps only its __init__.py, tests/
    only what is not a job's test."""
    batch = folder / "scripts" / "batch"
    modules = [p for p in batch.glob("*.py") if p.name != "__init__.py"] if batch.is_dir() else []
    for module in modules:
        module.unlink()
        (folder / "tests" / f"test_{module.stem}.py").unlink(missing_ok=True)


def ensure_service_dir(session: Session, fresh: bool = False) -> Path:
    """The service's folder the steps write: in the workspace, copied from the project once."""
    folder = session.service_dir
    if session.workspace is not None:
        if fresh and folder.exists():
            shutil.rmtree(folder)
        if not folder.exists() and session.project_service_dir.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(session.project_service_dir, folder, ignore=COPY_IGNORE)
    if not folder.exists():
        new_service_folder(session.root / "service", folder)
    return folder
