"""The doctor's auth checks: may the Scheduler job's call do what it is for?

A route job's Scheduler job calls a private Cloud Run service with an OIDC ID token: its
audience must be the service URL and its account must hold roles/run.invoker on the service
(`check_auth`). A Cloud Run job's Scheduler job starts it through the Run Admin API
(`POST .../jobs/J:run`), which takes an OAuth access token with the cloud-platform scope, not
an ID token, and its account needs run.jobs.run on that job: roles/run.invoker there, which
step 3 grants (`check_job_auth`). Each says what the live configuration gets wrong, with the
401/403 attempts in the window as evidence, and refusals it no longer explains.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from opslib.doctor.checks import (
    AUTH_CODES,
    STEP_DEPLOY,
    STEP_SCHEDULE,
    Finding,
    command,
    ok,
    recency,
    seen_codes,
)
from opslib.doctor.facts import Facts
from opslib.spec import defaults, names

CHECK = "auth"


def check_auth(facts: Facts) -> list[Finding]:
    """Scheduler's OIDC token fits the service: its audience, and the invoker role."""
    spec, job, service = facts.spec, facts.job, facts.service
    findings: list[Finding] = []
    if job is not None and service is not None:
        findings += _token(facts)
        findings += _invoker(facts)
    findings += _refused(
        facts,
        findings,
        "Cloud Run refused the job's token in the window, though the audience and invoker "
        "role look right now",
        "if it persists: the token's account must be schedule.service_account with "
        f"roles/run.invoker, and the audience the service URL; {STEP_DEPLOY} and 4",
    )
    if findings:
        return findings
    if job is None or service is None:
        return [ok("auth", "nothing to check yet: no job or no service")]
    account = job.http_target.oidc_token.service_account_email
    return [
        ok(
            "auth",
            f"the job's OIDC token (account {account}) has the service URL as audience, and "
            "the account may invoke the service",
            f"audience {job.http_target.oidc_token.audience or job.http_target.uri}; "
            f"no 401/403 in the window ({spec.service})",
        )
    ]


def _token(facts: Facts) -> list[Finding]:
    target, service = facts.job.http_target, facts.service
    if not target.oidc_token.service_account_email:
        kind = "an OAuth access token" if target.oauth_token.service_account_email else "no token"
        return [
            Finding(
                "auth",
                "error",
                f"the job sends {kind}; a private Cloud Run service needs an OIDC ID token",
                f"http_target has no oidcToken (service {facts.spec.service} is private)",
                f"{STEP_SCHEDULE}: it sets oidcToken with schedule.service_account",
            )
        ]
    audience = target.oidc_token.audience or target.uri
    accepted = {service.uri, *service.urls, *service.custom_audiences}
    accepted |= {u.rstrip("/") + "/" for u in accepted if u}
    if audience in accepted:
        return []
    seen = seen_codes(facts, ("UNAUTHENTICATED",), (401,))
    return [
        Finding(
            CHECK,
            "error",
            "the job's OIDC audience is not the service URL: Cloud Run answers 401",
            f"audience {audience!r}, service URL {service.uri!r}" + (f"; {seen}" if seen else ""),
            "remove schedule.audience from PARAMS (opslib uses the service URL) or set "
            f"schedule.audience: {service.uri}, then {STEP_SCHEDULE}"
            if facts.spec.schedule.audience not in (None, service.uri)
            else f"the spec is right but the live job differs: {STEP_SCHEDULE}",
        )
    ]


def _invoker(facts: Facts) -> list[Finding]:
    service, email = facts.service, facts.job.http_target.oidc_token.service_account_email
    members = facts.invokers
    if members is None or not email:
        return []
    if service.invoker_iam_disabled or members & {"allUsers", f"serviceAccount:{email}"}:
        return []
    seen = seen_codes(facts, ("PERMISSION_DENIED",), (403,))
    recent_ok = len(facts.attempts) and facts.attempts.iloc[-1]["code"] == "OK"
    severity = "error" if seen and not recent_ok else "info" if recent_ok else "warning"
    where = "" if seen else " (a project-level grant would not show here)"
    return [
        Finding(
            CHECK,
            severity,
            f"{email} lacks roles/run.invoker on service {facts.spec.service}: Cloud Run "
            "answers 403" + where,
            f"invokers on the service: {', '.join(sorted(members)) or 'none'}"
            + (f"; {seen}" if seen else ""),
            f"{STEP_DEPLOY}: it grants roles/run.invoker to schedule.service_account on this "
            f"service only (gcloud run services add-iam-policy-binding {facts.spec.service} "
            f"--region={facts.spec.region} --member=serviceAccount:{email} "
            "--role=roles/run.invoker)",
        )
    ]


def _refused(facts: Facts, config: list[Finding], finding: str, fix: str) -> list[Finding]:
    """401/403 in the logs that the live configuration no longer explains (fixed since?):
    an error while the newest attempt was refused, else info."""
    if config:
        return []
    seen = seen_codes(facts, AUTH_CODES, (401, 403))
    if not seen:
        return []
    severity = recency(facts, AUTH_CODES)
    return [Finding(CHECK, "info" if severity == "warning" else "error", finding, seen, fix)]


def check_job_auth(facts: Facts) -> list[Finding]:
    """The Scheduler job starts the Cloud Run job: the Run Admin API's `:run` URL, an OAuth
    token with the cloud-platform scope, and run.jobs.run on the job for its account."""
    job, run_job = facts.job, facts.run_job
    findings: list[Finding] = []
    if job is not None:
        findings += _run_target(facts) or _oauth(facts)
        if run_job is not None:
            findings += _runner(facts)
    findings += _refused(
        facts,
        findings,
        "the Run Admin API refused the Scheduler job's :run call in the window, though its "
        "OAuth token and the job's run.jobs.run grant look right now",
        "if it persists: the token's account must be schedule.service_account with "
        f"roles/run.invoker on the job; run {command(facts, 'run', '--steps', '3-5')} (step 3 "
        "grants it, step 4 re-applies the token, step 5 tries a run)",
    )
    if findings:
        return findings
    if job is None or run_job is None:
        return [ok(CHECK, "nothing to check yet: no Scheduler job or no Cloud Run job")]
    oauth = job.http_target.oauth_token
    return [
        ok(
            CHECK,
            f"the job starts Cloud Run job {facts.spec.job.name} through the Run Admin API with "
            f"an OAuth token (account {oauth.service_account_email}, scope "
            f"{oauth.scope or defaults.OAUTH_SCOPE}), and the account may run the job",
            f"POST {job.http_target.uri}; no 401/403 in the window",
        )
    ]


def _run_target(facts: Facts) -> list[Finding]:
    """The Scheduler job calls the Run Admin API's `:run` of this Cloud Run job."""
    spec, uri = facts.spec, facts.job.http_target.uri
    parts, api = urlsplit(uri), urlsplit(names.run_job_url(spec))
    regional = parts.netloc.endswith(f"-{api.netloc}")  # REGION-run.googleapis.com
    if parts.path == api.path and (parts.netloc == api.netloc or regional):
        return []
    return [
        Finding(
            CHECK,
            "error",
            f"the Scheduler job calls {uri}, not the Run Admin API call that starts Cloud Run "
            f"job {spec.job.name}",
            f"a Cloud Run job is started by POST {names.run_job_url(spec)}",
            f"run {command(facts, 'schedule')} (step 4 points the Scheduler job at it, with "
            "an OAuth token)",
        )
    ]


def _oauth(facts: Facts) -> list[Finding]:
    """An OAuth access token with the cloud-platform scope: what Google's APIs take."""
    target, spec = facts.job.http_target, facts.spec
    oauth, oidc = target.oauth_token, target.oidc_token
    step4 = command(facts, "schedule")
    if oauth.service_account_email:
        scopes = (oauth.scope or defaults.OAUTH_SCOPE).split()
        if defaults.OAUTH_SCOPE in scopes:
            return []
        return [
            Finding(
                CHECK,
                "error",
                f"the job's OAuth token has scope {oauth.scope}, not {defaults.OAUTH_SCOPE}: "
                "the Run Admin API answers 403 (insufficient authentication scopes)",
                seen_codes(facts, ("PERMISSION_DENIED",), ()) or f"POST {target.uri}",
                f"run {step4} (step 4 sets the scope {defaults.OAUTH_SCOPE})",
            )
        ]
    kind = (
        f"an OIDC ID token (account {oidc.service_account_email})"
        if oidc.service_account_email
        else "no token"
    )
    seen = seen_codes(facts, ("UNAUTHENTICATED",), ())
    return [
        Finding(
            CHECK,
            "error",
            f"the job sends {kind} to the Run Admin API, which takes an OAuth access token: "
            "jobs:run answers 401 UNAUTHENTICATED",
            f"http_target has no oauthToken (POST {target.uri})" + (f"; {seen}" if seen else ""),
            f"run {step4}: step 4 sends an OAuth token instead (account {spec.invoker_account}, "
            f"scope {defaults.OAUTH_SCOPE})",
        )
    ]


def _runner(facts: Facts) -> list[Finding]:
    """The token's account holds run.jobs.run on the Cloud Run job (roles/run.invoker)."""
    target = facts.job.http_target
    email = target.oauth_token.service_account_email or target.oidc_token.service_account_email
    members = facts.runners
    if members is None or not email:
        return []
    if members & {"allUsers", "allAuthenticatedUsers", f"serviceAccount:{email}"}:
        return []
    seen = seen_codes(facts, ("PERMISSION_DENIED",), ())
    attempts = facts.attempts
    recent_ok = len(attempts) and attempts.iloc[-1]["code"] == "OK"
    severity = "error" if seen and not recent_ok else "info" if recent_ok else "warning"
    where = "" if seen else " (a project-level grant would not show here)"
    name = facts.spec.job.name
    return [
        Finding(
            CHECK,
            severity,
            f"{email} lacks run.jobs.run on Cloud Run job {name}: the Run Admin API answers "
            "403 PERMISSION_DENIED to the Scheduler job's :run call" + where,
            "roles/run.invoker (or another role holding run.jobs.run) on the job: "
            f"{', '.join(sorted(members)) or 'nobody'}" + (f"; {seen}" if seen else ""),
            _grant(facts, email),
        )
    ]


def _grant(facts: Facts, email: str) -> str:
    """Step 3 grants roles/run.invoker on the job to the spec's account; step 4 makes the
    Scheduler job use that account when the live one sends another."""
    spec = facts.spec
    if email != spec.invoker_account:
        return (
            f"the Scheduler job sends {email}'s token, but the spec's account is "
            f"{spec.invoker_account}: run {command(facts, 'run', '--steps', '3-4')} (step 3 "
            "grants it roles/run.invoker on this job, step 4 makes the Scheduler job use it)"
        )
    gcloud = (
        f"gcloud run jobs add-iam-policy-binding {spec.job.name} --region={spec.region} "
        f"--member=serviceAccount:{email} --role=roles/run.invoker"
    )
    return (
        f"grant serviceAccount:{email} roles/run.invoker (it holds run.jobs.run) on this job "
        f"only: run {command(facts, 'deploy')}, which grants it in step 3 ({gcloud})"
    )
