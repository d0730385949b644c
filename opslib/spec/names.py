"""Google's resource names and URLs for an automation: written once, read by every step and page.

A spec names one Scheduler job, one Cloud Run service (or Cloud Run job) and its secrets; the
full names the APIs take (`projects/P/locations/R/...`), the Run Admin URL a Scheduler job
calls to start a Cloud Run job, the image a build pushes and the buckets a deploy uses are all
built here, so a page and the step that created a resource can never disagree on its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opslib.spec.model import Spec

RUN_API = "https://run.googleapis.com"
# The Artifact Registry repository opslib pushes to (Container Registry, gcr.io, is shut down).
REPOSITORY = "opslib"


def project(spec: Spec) -> str:
    """`projects/P`: Logging's resourceNames and Secret Manager's parent."""
    return project_of(spec.project)


def project_of(project_id: str) -> str:
    return f"projects/{project_id}"


def location(spec: Spec) -> str:
    """`projects/P/locations/R`: the parent of services, Run jobs and Scheduler jobs."""
    return location_of(spec.project, spec.region)


def location_of(project_id: str, region: str) -> str:
    return f"{project_of(project_id)}/locations/{region}"


def service(spec: Spec) -> str:
    """The Cloud Run service the spec's routes run on."""
    return f"{location(spec)}/services/{spec.service}"


def scheduler_job(spec: Spec) -> str:
    """The Scheduler job; its id is the spec's job name, so one spec owns one job."""
    return f"{location(spec)}/jobs/{spec.job.name}"


def run_job(spec: Spec) -> str:
    """The Cloud Run job of a `runtime: job` automation (same id as its Scheduler job)."""
    return f"{location(spec)}/jobs/{spec.job.name}"


def run_job_url(spec: Spec) -> str:
    """The Run Admin API call that starts an execution of the spec's Cloud Run job."""
    return f"{RUN_API}/v2/{run_job(spec)}:run"


def secret(project_id: str, secret_id: str) -> str:
    return f"{project_of(project_id)}/secrets/{secret_id}"


def secret_version(project_id: str, secret_id: str, version: str = "latest") -> str:
    return f"{secret(project_id, secret_id)}/versions/{version}"


def image(spec: Spec, tag: str) -> str:
    """The Artifact Registry image a build of the spec's service folder pushes."""
    host = f"{spec.region}-docker.pkg.dev"
    return f"{host}/{spec.project}/{REPOSITORY}/{spec.service}:{tag}"


def build_bucket(project_id: str) -> str:
    """Where `gcloud builds submit` (and step 3) upload the source (gcp-facts §5)."""
    return f"{project_id.replace(':', '_').replace('.', '_')}_cloudbuild"


def lease_bucket(project_id: str) -> str:
    """The bucket holding the overlap leases (one object per job) of a project."""
    return f"{project_id}-opslib-leases"


def short(name: str) -> str:
    """The last segment of a full name: the id people read (fx-rates, batch-service-00002-abc)."""
    return name.rsplit("/", 1)[-1]


# Cloud Monitoring: an automation's channels and alert policies carry these user labels, so a
# plan finds them by label (Monitoring generates their names) and destroy removes only them.
ALERT_LABELS = ("opslib_job", "opslib_region")


def alert_labels(spec: Spec) -> dict[str, str]:
    """The user labels that say which automation a channel or policy belongs to."""
    return dict(zip(ALERT_LABELS, (spec.job.name, spec.region), strict=True))


def alert_policy(spec: Spec, kind: str) -> str:
    """The display name of the automation's policy for `kind` (failed, overrun)."""
    return f"opslib {spec.job.name} ({spec.region}) {kind}"


def alert_channel(spec: Spec, key: str) -> str:
    """The display name of one of the automation's channels (`email ops@example.com`)."""
    return f"opslib {spec.job.name} ({spec.region}) {key}"
