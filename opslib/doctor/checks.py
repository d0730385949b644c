"""The doctor's checks of the service, its revision, the job and its auth: one function each.

Each check reads `Facts` and returns its findings, or one `ok` row saying what it checked.
A finding names the spec key to change and to what, or the code pattern to use, and the step
that applies it. Timing checks (deadlines, cold starts) live in `timing`; calls to external
APIs (429s) in `calls`; the route the job calls against the serving revision in `routes`;
runs that skipped or overlapped in `overlap`. A fix that sends the reader to another finding
names it with `see`, never its own check.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from opslib.cloud import codes
from opslib.core.display import TIME_FORMAT
from opslib.doctor.facts import Facts
from opslib.spec import rules as g

SEVERITIES = ("error", "warning", "info", "ok")
AUTH_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")
# Which check explains a failed attempt, by the rpc code Scheduler recorded.
EXPLAINED_BY = {
    "DEADLINE_EXCEEDED": "deadline",
    "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth",
    "INTERNAL": "job errors",
    "UNKNOWN": "job errors",
    "UNAVAILABLE": "revision",
    "NOT_FOUND": "route",  # the path is not served (doctor.routes), or no service at all
}
# Step 3 ships the spec's service folder with every automation of the service (siblings).
STEP_DEPLOY = "run step 3 again (opslib deploy PARAMS, or notebooks/03_deploy)"
STEP_SCHEDULE = "run step 4 again (opslib run PARAMS --steps 4-5, or notebooks/04_schedule)"


class Finding(NamedTuple):
    """One row of the doctor's table."""

    check: str
    severity: str
    finding: str
    evidence: str = ""
    fix: str = ""


def ok(check: str, finding: str, evidence: str = "") -> Finding:
    return Finding(check, "ok", finding, evidence, "")


def see(*checks: str) -> str:
    """A fix that points at other findings, by the [check] label `render` shows them with."""
    return "see " + " and ".join(f"[{c}]" for c in checks)


def cause_of(facts: Facts, code: str) -> str:
    """The check that explains an attempt that ended with rpc `code`."""
    if code == "NOT_FOUND" and facts.service is None:
        return "service"
    return EXPLAINED_BY.get(code, "job errors")


def when(stamp: object, zone: str) -> str:
    """A timestamp as people read it, to the second, on the job's clock (`Facts.zone`, its
    schedule.time_zone), as the verdict's banner tells the time."""
    if stamp is None or pd.isna(stamp):
        return "?"
    moment = pd.Timestamp(stamp)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment
    return moment.tz_convert(zone).strftime(TIME_FORMAT)


def secs(value: float) -> str:
    if value != value:  # NaN: not measured
        return "?"
    return g.format_duration(round(value, 2 if value < 10 else 1))


def change(facts: Facts, values: dict[str, str], live: dict[str, str]) -> str:
    """The spec keys to set and the steps that apply them; says so when only the live side lags.

    `values` maps spec keys (deploy.timeout) to the least they should be; `live` maps them to
    what is deployed. A spec that already asks for enough needs only the step run again.
    """
    edits, lagging = {}, {}
    for key, want in values.items():
        have = _spec_value(facts, key)
        if have is not None and _covers(have, want):
            if live.get(key) != have:
                lagging[key] = have
        else:
            edits[key] = want
    keys = [*edits, *lagging]
    steps = " and ".join(
        sorted({STEP_DEPLOY if k.startswith("deploy.") else STEP_SCHEDULE for k in keys})
    )
    lag = "; ".join(
        f"the spec already has {k}: {v} but the live one is {live.get(k)}"
        for k, v in lagging.items()
    )
    if not edits:
        return f"{lag}: {steps} to apply it" if lag else ""
    text = "set " + ", ".join(f"{k}: {v}" for k, v in edits.items()) + " in PARAMS"
    return f"{text}; {lag}; then {steps}" if lag else f"{text}, then {steps}"


def _covers(have: str, want: str) -> bool:
    """The spec's value is at least the wanted one (durations as seconds, counts as numbers)."""
    if have.isdigit() and want.isdigit():
        return int(have) >= int(want)
    try:
        return g.parse_duration(have, key="value") >= g.parse_duration(want, key="value")
    except g.RuleBroken:
        return have == want


def _spec_value(facts: Facts, key: str) -> str | None:
    section, _, name = key.partition(".")
    value = getattr(getattr(facts.spec, section, None), name, None)
    if isinstance(value, float):
        return g.format_duration(value)
    return None if value is None else str(value)


def recency(facts: Facts, codes: tuple[str, ...]) -> str:
    """error when the newest attempt failed with one of `codes`, else warning (it happened)."""
    attempts = facts.attempts
    if len(attempts) and attempts.iloc[-1]["code"] in codes:
        return "error"
    return "warning"


def _absent(facts: Facts, check: str, key: str, role: str, missing: Finding) -> list[Finding]:
    """Why a resource read as None: the read failed (grant `role` to see it), else `missing`."""
    if key in facts.errors:
        return [
            Finding(
                check,
                "warning",
                f"could not read the {key}",
                facts.errors[key],
                f"check your access: {role}",
            )
        ]
    return [missing]


def check_service(facts: Facts) -> list[Finding]:
    """The Cloud Run service exists, is ready and has a URL."""
    spec, service = facts.spec, facts.service
    if service is None:
        missing = Finding(
            "service",
            "error",
            f"there is no Cloud Run service {spec.service} in {spec.project}/{spec.region}",
            "run.services.get answered NOT_FOUND",
            STEP_DEPLOY,
        )
        return _absent(facts, "service", "service", "roles/run.viewer", missing)
    state = service.terminal_condition.state.name
    if state == "CONDITION_FAILED" and facts.failed_revision is None:
        return [
            Finding(
                "service",
                "error",
                f"service {spec.service} is not ready",
                f"terminal condition {state}: {service.terminal_condition.message}",
                f"read the message, fix the service, then {STEP_DEPLOY}",
            )
        ]
    serving = ", ".join(
        f"{t.revision or service.latest_ready_revision.rsplit('/', 1)[-1]} {t.percent}%"
        for t in service.traffic_statuses
    )
    return [ok("service", f"{spec.service} is ready at {service.uri}", f"traffic: {serving}")]


def check_revision(facts: Facts) -> list[Finding]:
    """The newest revision started; no instance failed to start since."""
    findings = [*_revision_failed(facts), *_starts_failed(facts)]
    if findings:
        return findings
    if facts.service is None:
        return [ok("revision", "no service yet, so no revision to check")]
    latest = facts.service.latest_ready_revision.rsplit("/", 1)[-1]
    return [
        ok(
            "revision",
            f"the newest revision {latest} started",
            "no instance start failed in the window",
        )
    ]


def _revision_failed(facts: Facts) -> list[Finding]:
    """The newest revision never became ready: its condition's reason and last log lines."""
    revision = facts.failed_revision
    if revision is None:
        return []
    name = revision.name.rsplit("/", 1)[-1]
    failed = next(c for c in revision.conditions if c.state.name == "CONDITION_FAILED")
    reason = failed.revision_reason.name if failed.revision_reason else failed.reason.name
    ready = facts.service.latest_ready_revision.rsplit("/", 1)[-1] or "none"
    lines = _revision_lines(facts, name)
    evidence = f"{reason}: " if failed.revision_reason or failed.reason else ""
    evidence += f"{failed.message}; traffic stays on {ready}"
    if lines:
        evidence += "; last log lines: " + " | ".join(lines)
    fix = "make the container start and listen on $PORT (the log lines say why), then "
    if "SECRETS_ACCESS" in f"{reason} {failed.message}":
        fix = "create the secret or grant access (opslib secrets check PARAMS), then "
    return [
        Finding(
            "revision", "error", f"revision {name} failed to start", evidence, fix + STEP_DEPLOY
        )
    ]


def _starts_failed(facts: Facts) -> list[Finding]:
    """Requests that got 503 because a new instance of a ready revision failed to start."""
    requests = facts.requests
    unstarted = (
        requests[(requests["http_status"] == 503) & requests["text"].notna()]
        if len(requests)
        else requests
    )
    if not len(unstarted):
        return []
    last = unstarted.iloc[-1]
    cause = (
        "create the secret or enable its version (opslib secrets check PARAMS)"
        if "SECRETS_ACCESS" in str(last["text"])
        else "read the revision's stderr (opslib logs PARAMS --errors): an import or "
        "setting that fails at start is the usual cause; fix it"
    )
    newest = requests.iloc[-1]["http_status"] == 503
    return [
        Finding(
            "revision",
            "error" if newest else "warning",
            f"{len(unstarted)} request(s) got 503: a new instance failed to start",
            f"last {when(last['timestamp'], facts.zone)} on {last['revision']}: "
            f"{str(last['text'])[:300]}",
            f"{cause}, then {STEP_DEPLOY}",
        )
    ]


def _revision_lines(facts: Facts, revision: str, count: int = 5) -> list[str]:
    app = facts.app
    if app.empty:
        return []
    mine = app[(app["revision"] == revision) & app["message"].notna()]
    return [str(m).splitlines()[0][:200] for m in mine["message"].tail(count)]


def check_job(facts: Facts) -> list[Finding]:
    """The Scheduler job exists, is enabled, and its recent attempts succeed."""
    spec, job = facts.spec, facts.job
    if job is None:
        missing = Finding(
            "scheduler job",
            "error",
            f"there is no Scheduler job {spec.job.name} in {spec.project}/{spec.region}",
            "cloudscheduler.jobs.get answered NOT_FOUND",
            STEP_SCHEDULE,
        )
        return _absent(facts, "scheduler job", "job", "roles/cloudscheduler.viewer", missing)
    findings: list[Finding] = []
    state = job.state.name
    last = when(job.last_attempt_time, facts.zone) if job.last_attempt_time else "never"
    if state == "PAUSED":
        findings.append(
            Finding(
                "scheduler job",
                "warning",
                f"job {spec.job.name} is PAUSED: nothing runs on its cron ({job.schedule})",
                f"state PAUSED; last attempt {last}",
                "resume it: opslib schedule PARAMS resume "
                f"(gcloud scheduler jobs resume {spec.job.name} --location={spec.region})",
            )
        )
    elif state in ("DISABLED", "UPDATE_FAILED"):
        findings.append(
            Finding(
                "scheduler job",
                "error",
                f"job {spec.job.name} is {state}",
                f"state {state}; last attempt {last}",
                f"{STEP_SCHEDULE}: it re-applies the job (what Scheduler advises)",
            )
        )
    findings += _failing(facts)
    if findings:
        return findings
    attempts = facts.attempts
    return [
        ok(
            "scheduler job",
            f"job {spec.job.name} is {state} on {job.schedule} ({job.time_zone or 'Etc/UTC'})",
            f"{len(attempts)} attempt(s) in the window, the last ({last}) succeeded"
            if len(attempts)
            else f"no attempt in the window; last attempt {last}",
        )
    ]


def _failing(facts: Facts) -> list[Finding]:
    """The newest attempts failed: how many in a row, with which codes, and who explains it."""
    attempts = facts.attempts
    code = facts.job.status.code
    if attempts.empty:
        if not code:
            return []
        name = _rpc_name(code)
        text = f"the last attempt failed with rpc code {name}: {facts.job.status.message}"
        return [
            Finding(
                "scheduler job",
                "error",
                "the job's last attempt failed",
                text,
                f"{see(cause_of(facts, name))} for the cause and the change to make",
            )
        ]
    failed = (attempts["code"] != "OK").to_numpy()
    if not failed[-1]:
        return []
    streak = len(failed) if failed.all() else int(failed[::-1].argmin())
    tail = attempts.tail(streak)
    codes = tail["code"].value_counts()
    last = tail.iloc[-1]
    causes = sorted({cause_of(facts, c) for c in codes.index})
    return [
        Finding(
            "scheduler job",
            "error",
            f"the last {streak} attempt(s) failed",
            ", ".join(f"{c} x{n}" for c, n in codes.items())
            + f"; last at {when(last['end'], facts.zone)}: {last['detail'] or last['code']}",
            f"{see(*causes)} for the cause and the change to make",
        )
    ]


def _rpc_name(code: int) -> str:
    """NOT_FOUND for 5: the job's status holds the number, the checks speak names."""
    return codes.name(code)


def check_auth(facts: Facts) -> list[Finding]:
    """Scheduler's OIDC token fits the service: its audience, and the invoker role."""
    spec, job, service = facts.spec, facts.job, facts.service
    findings: list[Finding] = []
    if job is not None and service is not None:
        findings += _token(facts)
        findings += _invoker(facts)
    findings += _refused(facts, findings)
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
            "auth",
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
            "auth",
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


def seen_codes(facts: Facts, rpc: tuple[str, ...], http: tuple[int, ...]) -> str:
    """'N attempt(s) ended CODE (last T); M request(s) got HTTP' for the window, or ''."""
    parts = []
    attempts = facts.attempts
    hit = attempts[attempts["code"].isin(rpc)] if len(attempts) else attempts
    if len(hit):
        parts.append(
            f"{len(hit)} attempt(s) ended {'/'.join(sorted(set(hit['code'])))} "
            f"(last {when(hit.iloc[-1]['end'], facts.zone)})"
        )
    requests = facts.job_requests
    got = requests[requests["http_status"].isin(http)] if len(requests) else requests
    if len(got):
        statuses = "/".join(str(int(s)) for s in sorted(set(got["http_status"])))
        parts.append(f"{len(got)} request(s) to {facts.route} got {statuses}")
    return "; ".join(parts)


def _refused(facts: Facts, config: list[Finding]) -> list[Finding]:
    """401/403 in the logs that the live configuration no longer explains (fixed since?)."""
    if config:
        return []
    seen = seen_codes(facts, AUTH_CODES, (401, 403))
    if not seen:
        return []
    severity = recency(facts, AUTH_CODES)
    return [
        Finding(
            "auth",
            "info" if severity == "warning" else "error",
            "Cloud Run refused the job's token in the window, though the audience and "
            "invoker role look right now",
            seen,
            "if it persists: the token's account must be schedule.service_account with "
            f"roles/run.invoker, and the audience the service URL; {STEP_DEPLOY} and 4",
        )
    ]
