"""The doctor's checks of the service, its revision and the Scheduler job, and what every
check shares: the Finding row, `see`, times on the job's clock, the commands a fix gives.

Each check reads `Facts` and returns its findings, or one `ok` row saying what it checked.
A finding names the spec key to change and to what, or the code pattern to use, and the step
that applies it. The token and the role the Scheduler job needs live in `auth`; timing checks
(deadlines, cold starts) in `timing`; calls to external APIs (429s) in `calls`; the route the
job calls against the serving revision in `routes`; runs that skipped or overlapped in
`overlap`; a Cloud Run job's own checks (the job, its tasks, their timeout) in `jobs`. A fix
that sends the reader to another finding names it with `see`, never its own check.
"""

from __future__ import annotations

import shlex
from pathlib import Path
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
# A Cloud Run job's attempt is only the Run Admin API's `:run` call: refused (auth), or the
# job cannot be run (missing, not ready, the API failing): the Cloud Run job's own check.
RUN_JOB_CHECK = "cloud run job"
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
    if facts.runtime == "job":
        return "auth" if code in AUTH_CODES else RUN_JOB_CHECK
    if code == "NOT_FOUND" and facts.service is None:
        return "service"
    return EXPLAINED_BY.get(code, "job errors")


def shown(path: Path, root: Path | None) -> str:
    """A path as the user types it: relative to the project root when it is inside it."""
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return str(path)


def params_file(facts: Facts) -> str:
    """The user's own parameters file, relative to the project root (PARAMS when unknown)."""
    return shown(facts.params, facts.root) if facts.params is not None else "PARAMS"


def command(facts: Facts, step: str, *flags: str) -> str:
    """`opslib STEP PARAMS FLAGS` in backquotes, with the user's parameters file, to be run
    from the project root."""
    return "`" + shlex.join(["opslib", step, params_file(facts), *flags]) + "`"


def module_path(facts: Facts) -> str:
    """The job's module in the service folder the doctor read, as the user finds it."""
    folder = facts.service_dir or Path(facts.spec.service_dir)
    return shown(Path(folder) / "scripts" / "batch" / f"{facts.spec.job.module}.py", facts.root)


def test_path(facts: Facts) -> str:
    """The job's unit test (step 1 writes it in the service folder's tests/)."""
    folder = facts.service_dir or Path(facts.spec.service_dir)
    return shown(Path(folder) / "tests" / f"test_{facts.spec.job.module}.py", facts.root)


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


class Missing(NamedTuple):
    """A resource the doctor read as None: what it is, the read, and who may read it."""

    what: str  # "Cloud Run service batch-service"
    key: str  # its name in Facts.errors
    read: str  # the API method: run.services.get
    role: str  # the role that may read it


def absent(facts: Facts, check: str, missing: Missing, fix: str, seen: str = "") -> list[Finding]:
    """Why a resource read as None: the read failed (grant the role to see it), else it is not
    there (an error whose fix is `fix`; `seen`: what the logs say about it)."""
    if missing.key in facts.errors:
        return [
            Finding(
                check,
                "warning",
                f"could not read the {missing.key}",
                facts.errors[missing.key],
                f"check your access: {missing.role}",
            )
        ]
    spec = facts.spec
    return [
        Finding(
            check,
            "error",
            f"there is no {missing.what} in {spec.project}/{spec.region}",
            f"{missing.read} answered NOT_FOUND" + (f"; {seen}" if seen else ""),
            fix,
        )
    ]


def check_job(facts: Facts) -> list[Finding]:
    """The Scheduler job exists, is enabled, and its recent attempts succeed."""
    spec, job = facts.spec, facts.job
    if job is None:
        what = f"Scheduler job {spec.job.name}"
        missing = Missing(what, "job", "cloudscheduler.jobs.get", "roles/cloudscheduler.viewer")
        return absent(facts, "scheduler job", missing, STEP_SCHEDULE)
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
        name = codes.name(code)
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
    counts = tail["code"].value_counts()
    last = tail.iloc[-1]
    causes = sorted({cause_of(facts, c) for c in counts.index})
    return [
        Finding(
            "scheduler job",
            "error",
            f"the last {streak} attempt(s) failed",
            ", ".join(f"{c} x{n}" for c, n in counts.items())
            + f"; last at {when(last['end'], facts.zone)}: {last['detail'] or last['code']}",
            f"{see(*causes)} for the cause and the change to make",
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
