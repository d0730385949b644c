"""Step 5 — run the Scheduler job now and judge that one run from its logs.

Owns `service` (a route on a Cloud Run service: the attempt and its log lines), `job` (a
Cloud Run job: its execution, one row per task) and `attempt` (what both share: the verdict,
running the job now, waiting for the attempt). What failed is explained by `opslib.doctor`.
May import `core`, `spec`, `cloud` and `steps.logs`; never the doctor (it imports us).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opslib.steps.verify.attempt import Verdict, error_lines

if TYPE_CHECKING:
    from opslib.cloud.clients import Clients
    from opslib.spec.model import Spec

__all__ = ["Verdict", "error_lines", "verify"]


def verify(spec: Spec, clients: Clients, progress: bool = True) -> Verdict:
    """Run the job now and judge that one run: a route's attempt, or a Cloud Run job's
    execution."""
    if spec.job.effective_runtime == "job":
        from opslib.steps.verify import job as runtime
    else:
        from opslib.steps.verify import service as runtime  # type: ignore[no-redef]
    return runtime.verify(spec, clients, progress)
