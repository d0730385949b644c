"""The doctor's checks of a route job's Cloud Run service: it is ready, its newest revision
started, and no new instance failed to start (503s with the reason Cloud Run logged).
"""

from __future__ import annotations

from opslib.doctor.checks import STEP_DEPLOY, Finding, Missing, absent, ok, see, when
from opslib.doctor.facts import Facts


def check_service(facts: Facts) -> list[Finding]:
    """The Cloud Run service exists, is ready and has a URL."""
    spec, service = facts.spec, facts.service
    if service is None:
        what = f"Cloud Run service {spec.service}"
        missing = Missing(what, "service", "run.services.get", "roles/run.viewer")
        return absent(facts, "service", missing, STEP_DEPLOY)
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
    if facts.failed_revision is not None and not service.latest_ready_revision:
        return [_nothing_serves(facts)]
    serving = ", ".join(
        f"{t.revision or service.latest_ready_revision.rsplit('/', 1)[-1]} {t.percent}%"
        for t in service.traffic_statuses
    )
    return [ok("service", f"{spec.service} is ready at {service.uri}", f"traffic: {serving}")]


def _nothing_serves(facts: Facts) -> Finding:
    """The newest revision failed and none before it was ever ready: no route answers."""
    return Finding(
        "service",
        "error",
        f"service {facts.spec.service} has no ready revision: nothing serves its routes",
        f"terminal condition {facts.service.terminal_condition.state.name}",
        see("revision"),
    )


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
    elif reason == "INTERNAL":  # the platform's failure, not the container's
        fix = "nothing in the service to fix (the rollout itself was cut short): "
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
