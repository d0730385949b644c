"""The doctor's checks of what the job itself does: its calls to external APIs, and its errors.

Cloud Run's egress IPs are shared, so APIs that limit by IP answer 429 more often than they do
from a laptop. The service's retry policy (`scripts.common.http`) logs each retry as a WARNING
with `status`, `attempt` and `url`; a 429 with no such line means the call bypassed it. With
the service folder at hand the job module is read too, for calls made around the policy.
"""

from __future__ import annotations

import ast
import re
from urllib.parse import urlsplit

import pandas as pd

from opslib.doctor.checks import STEP_DEPLOY, Finding, module_path, ok, see, test_path, when
from opslib.doctor.facts import Facts

POLICY_LOGGER = "scripts.common.http"
RATE_LIMITED = re.compile(r"\b429\b|too many requests|rate.?limit", re.IGNORECASE)
_URL = re.compile(r"for url: (\S+)")
_HTTP_MODULES = {"requests", "httpx", "urllib", "aiohttp", "urllib3"}
POLICY_PATTERN = (
    "call it through the service's retry policy: `from scripts.common.http import get_json, "
    "request` and `get_json(url)` or `request('POST', url, json=...)` (3 attempts, "
    "exponential backoff, honours Retry-After)"
)
SLOW_DOWN = (
    "space the calls out (time.sleep between requests, fewer per run), give the policy more "
    "room (request(..., policy=RetryPolicy(attempts=5, max_wait=60))), move schedule.cron off "
    "the full hour, or use another API or a fixed egress IP (Cloud NAT) if the provider "
    "limits by IP"
)
_WARNING_UP = ("WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")


def check_rate_limits(facts: Facts) -> list[Finding]:
    """429s the job's calls got, whether the retry policy handled them, and what to change."""
    app = facts.app
    bypass = bypassing_calls(facts.job_source) if facts.job_source else []
    if app.empty:
        limited = app
    else:
        worded = app["severity"].isin(_WARNING_UP) & app["message"].fillna("").str.contains(
            RATE_LIMITED
        )
        limited = app[(app["app_status"] == 429) | worded]
    if limited.empty:
        if bypass:
            return [
                Finding(
                    "rate limit (429)",
                    "info",
                    "no 429 in the window, but the job calls HTTP around the retry policy",
                    _source(facts, bypass),
                    POLICY_PATTERN,
                )
            ]
        return [ok("rate limit (429)", "no 429 or rate-limit line from the job in the window")]
    retried = limited[limited["logger"] == POLICY_LOGGER]
    hit_runs = set(limited["run_id"].dropna())
    runs = facts.runs
    failed = (
        runs[(runs["status"] == "error") & runs["run_id"].isin(hit_runs)] if len(runs) else runs
    )
    hosts = sorted(_hosts(limited))
    where = ", ".join(hosts) or "an external API"
    evidence = [
        f"{len(limited)} line(s) with 429 in {len(hit_runs) or 'unknown'} run(s) from {where}",
        f"{len(retried)} retry line(s) from the policy ({POLICY_LOGGER})",
        f"{len(failed)} of those run(s) failed",
        f"last: {when(limited.iloc[-1]['timestamp'], facts.zone)} "
        f"{_first_line(limited.iloc[-1]['message'])}",
    ]
    if bypass:
        evidence.append(_source(facts, bypass))
    last_run_failed = (
        len(runs) and runs.iloc[-1]["status"] == "error" and runs.iloc[-1]["run_id"] in hit_runs
    )
    severity = "error" if last_run_failed else "warning"
    if retried.empty:
        finding = (
            f"{where} answered 429 and the job did not retry: its calls bypass the retry policy"
        )
        fix = f"{POLICY_PATTERN}; then {STEP_DEPLOY}. If 429s persist: {SLOW_DOWN}"
    elif len(failed):
        finding = f"{where} rate-limits the job (429): retries did not get through"
        fix = SLOW_DOWN
    else:
        finding = f"{where} answered 429; the retry policy recovered"
        fix = f"nothing is failing yet; to waste less time waiting: {SLOW_DOWN}"
    return [Finding("rate limit (429)", severity, finding, "; ".join(evidence), fix)]


def _hosts(lines: pd.DataFrame) -> set[str]:
    """Hosts named by the policy's `url` field or by requests' 'for url: ...' messages."""
    urls = [u for u in lines["url"].dropna()]
    urls += [m.group(1) for m in lines["message"].dropna().map(_URL.search) if m]
    return {urlsplit(u).netloc for u in urls if urlsplit(u).netloc}


def bypassing_calls(source: str) -> list[tuple[int, str]]:
    """(line, call) for HTTP calls made with requests/httpx/urllib directly, not the policy."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name.split(".")[0] in _HTTP_MODULES or name.endswith("urlopen"):
            found.append((node.lineno, name))
    return sorted(found)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _source(facts: Facts, calls: list[tuple[int, str]]) -> str:
    module = f"scripts/batch/{facts.spec.job.module}.py"
    return f"{module} calls " + ", ".join(f"{name}() on line {line}" for line, name in calls)


def check_job_errors(facts: Facts) -> list[Finding]:
    """Runs of the job that ended in an error, or reported errors in their counts."""
    app, runs, job = facts.app, facts.runs, facts.spec.job.name
    if app.empty or runs.empty:
        return [ok("job errors", f"no run of {job} in the window")]
    mine = app[app["job"] == job]
    ends = mine[mine["status"].isin(("success", "error"))]
    failed = ends[ends["status"] == "error"]
    counted = ends[(ends["status"] == "success") & (ends["errors"].fillna(0) > 0)]
    findings = [*_lost(facts), *_failed(facts, failed), *counted_errors(counted, facts.zone)]
    if findings:
        return findings
    processed = int(ends["processed"].fillna(0).sum()) if len(ends) else 0
    return [
        ok(
            "job errors",
            f"{len(ends)} run(s) of {job} finished without error",
            f"processed {processed} in total",
        )
    ]


def _lost(facts: Facts) -> list[Finding]:
    """Runs that started but never ended: the instance died under them (often memory)."""
    lost, job = facts.lost_runs, facts.spec.job.name
    if not len(lost):
        return []
    return [
        Finding(
            "job errors",
            "warning",
            f"{len(lost)} run(s) of {job} started but never logged an end",
            f"last started {when(lost.iloc[-1]['start'], facts.zone)} "
            f"(run {lost.iloc[-1]['run_id']}); "
            "an instance that crashes (out of memory) or is stopped mid-run leaves no end "
            "line",
            "read the service's logs around that time (opslib logs PARAMS --errors); if "
            f"memory ran out, raise deploy.memory, then {STEP_DEPLOY}",
        )
    ]


def _failed(facts: Facts, failed: pd.DataFrame) -> list[Finding]:
    """Runs that ended in error: their commonest messages, and whether a 429 explains them."""
    if not len(failed):
        return []
    runs, job = facts.runs, facts.spec.job.name
    last = failed.iloc[-1]
    messages = failed["message"].map(_first_line).value_counts()
    top = "; ".join(f"{n}x {m[:160]}" for m, n in messages.head(3).items())
    rate = any(RATE_LIMITED.search(m) for m in messages.index)
    newest_failed = runs.iloc[-1]["status"] == "error"
    fix = (
        see("rate limit (429)")
        if rate
        else f"the job raised it: fix {module_path(facts)} (its test: {test_path(facts)}), "
        f"then {STEP_DEPLOY}"
    )
    return [
        Finding(
            "job errors",
            "error" if newest_failed else "warning",
            f"{len(failed)} of {len(runs)} run(s) of {job} failed",
            f"{top}; last at {when(last['timestamp'], facts.zone)}; the route answers 500, which "
            "Scheduler records as INTERNAL",
            fix,
        )
    ]


def counted_errors(counted: pd.DataFrame, zone: str, check: str = "job errors") -> list[Finding]:
    """Runs that succeeded yet counted errors: records the job skipped, worth a look."""
    if not len(counted):
        return []
    total, last = int(counted["errors"].sum()), counted.iloc[-1]
    return [
        Finding(
            check,
            "warning",
            f"{len(counted)} run(s) finished but reported {total} error(s) in their counts",
            f"last: {when(last['timestamp'], zone)} {_first_line(last['message'])}",
            "read the run's WARNING/ERROR lines (opslib logs PARAMS --errors) and handle "
            "those records in the job",
        )
    ]


def _first_line(message: object) -> str:
    return str(message).splitlines()[0][:200] if isinstance(message, str) else ""
