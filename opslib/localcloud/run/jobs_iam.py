"""Who may run a Cloud Run job: the caller's token and the job's IAM policy.

Google's APIs take OAuth access tokens: an ID token, or a token localcloud did not sign (or
that expired), is 401 UNAUTHENTICATED; an access token without the cloud-platform scope is
403 "Request had insufficient authentication scopes."; an account without `run.jobs.run` on
the job (`run.jobs.runWithOverrides` when the request has overrides) is 403 PERMISSION_DENIED.
The predefined roles that hold `run.jobs.run` are run.invoker, run.jobsExecutor,
run.jobsExecutorWithOverrides, run.developer, run.admin, owner and editor; all but the first
two hold `run.jobs.runWithOverrides`. Requests without a Bearer token (the Python clients'
anonymous credentials, gcloud without credentials) and the metadata server's opaque tokens
are not checked: they act as the project's owner, as everywhere else in localcloud.
"""

from __future__ import annotations

from typing import Any

from opslib.localcloud import tokens
from opslib.localcloud.errors import ApiError

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
RUN_ROLES = {
    "roles/run.invoker",
    "roles/run.jobsExecutor",
    "roles/run.jobsExecutorWithOverrides",
    "roles/run.developer",
    "roles/run.admin",
    "roles/owner",
    "roles/editor",
}
OVERRIDE_ROLES = RUN_ROLES - {"roles/run.invoker", "roles/run.jobsExecutor"}
BAD_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def authorize(jobs: Any, header: str, job_name: str, overrides: bool) -> str:
    """The caller's email once its token may run the job ('' when no token is checked)."""
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    if token.count(".") != 2:
        return ""  # no token, or the metadata server's opaque ones: not checked
    try:
        claims = tokens.verify(jobs.cloud, token)
    except tokens.InvalidToken:
        raise ApiError("UNAUTHENTICATED", BAD_CREDENTIALS) from None
    if "scope" not in claims:  # an ID token: Google APIs take access tokens only
        raise ApiError("UNAUTHENTICATED", BAD_CREDENTIALS)
    if CLOUD_PLATFORM not in str(claims["scope"]).split():
        raise ApiError("PERMISSION_DENIED", "Request had insufficient authentication scopes.")
    email = claims.get("email", "")
    members = {f"serviceAccount:{email}", f"user:{email}", "allAuthenticatedUsers", "allUsers"}
    roles = OVERRIDE_ROLES if overrides else RUN_ROLES
    bindings = (jobs.data["jobs"].get(job_name) or {}).get("_iam", {}).get("bindings", [])
    if not any(b.get("role") in roles and members & set(b.get("members", [])) for b in bindings):
        permission = "run.jobs.runWithOverrides" if overrides else "run.jobs.run"
        raise ApiError(
            "PERMISSION_DENIED",
            f"Permission '{permission}' denied on resource '{job_name}' "
            "(or resource may not exist).",
        )
    return email
