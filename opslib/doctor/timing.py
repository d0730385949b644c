"""The doctor's timing checks: 504s and deadlines, the deadline chain, and cold starts.

A run must fit inside Scheduler's attempt deadline, which must fit inside Cloud Run's request
timeout; Scheduler waits at most 30 minutes. Run times come from the job's own end lines
(`duration_ms`), which Cloud Run keeps writing after Scheduler or the front gave up, so the
doctor knows how long the job really needs, not just that it was cut off.
"""

from __future__ import annotations

import math

import pandas as pd

from opslib.doctor.checks import Finding, change, ok, recency, secs, see, when
from opslib.doctor.facts import SYSTEM_LOG, Facts
from opslib.spec import pricing
from opslib.spec import rules as g

HEADROOM = 1.5  # a deadline this many times the longest run absorbs normal variance
TIGHT = 0.8  # p95 above this share of the deadline leaves too little room
COLD_PENALTY = 1.0  # seconds a cold start may add before it is worth a warning
SPLIT = (
    "split the job so each part fits (e.g. one job per market, as KR and US in the seed), or "
    "run the work as a Cloud Run job, which has no 30-minute HTTP attempt limit"
)


def needed(seconds: float) -> float:
    """A deadline with headroom over `seconds`, rounded up to a value people write."""
    want = max(seconds * HEADROOM, g.ATTEMPT_DEADLINE_MIN)
    step = 15 if want <= 120 else 60 if want <= 600 else 300
    return float(math.ceil(want / step) * step)


def check_deadline(facts: Facts) -> list[Finding]:
    """No attempt ended DEADLINE_EXCEEDED, no request got 504, no run outlived the deadline."""
    deadline, timeout = facts.deadline, facts.run_timeout
    attempts, requests, runs = facts.attempts, facts.requests, facts.runs
    timed_out = attempts[attempts["code"] == "DEADLINE_EXCEEDED"] if len(attempts) else attempts
    cut = requests[requests["http_status"] == 504] if len(requests) else requests
    runs = runs.drop(index=facts.lost_runs.index)
    long = runs[runs["seconds"] > min(deadline, timeout)] if len(runs) else runs
    if not (len(timed_out) or len(cut) or len(long)):
        return [_deadline_ok(facts)]
    done, running = long[long["done"]], long[~long["done"]]
    evidence = _cut_evidence(facts, timed_out, cut)
    evidence += _overrun_evidence(done, running, facts.zone)
    cold = _cold_share(facts, timed_out)
    if cold:
        evidence.append(cold)
    observed = max([*done["seconds"], *running["seconds"], 0.0])
    evidence.append(f"attempt deadline {secs(deadline)}, Cloud Run timeout {secs(timeout)}")
    codes = ("DEADLINE_EXCEEDED",)
    severity = recency(facts, codes) if len(timed_out) else "error" if len(running) else "warning"
    return [
        Finding(
            "deadline",
            severity,
            f"the job runs longer than it is given: {_who(timed_out, cut)} gave up first",
            "; ".join(evidence),
            _deadline_fix(facts, observed, bool(len(cut)), cold),
        )
    ]


def _deadline_ok(facts: Facts) -> Finding:
    """Nothing was cut: the ok row names the longest run, so the reader sees the room left."""
    values, _ = facts.durations
    longest = f"longest run {secs(values.max())}" if len(values) else "no finished run"
    return ok(
        "deadline",
        f"no attempt outlived the {secs(facts.deadline)} attempt deadline and no request hit "
        f"Cloud Run's {secs(facts.run_timeout)} timeout",
        f"{len(facts.attempts)} attempt(s) in the window; {longest}",
    )


def _cut_evidence(facts: Facts, timed_out: pd.DataFrame, cut: pd.DataFrame) -> list[str]:
    """Who cut runs off: Scheduler's DEADLINE_EXCEEDED attempts and Cloud Run's 504s."""
    evidence = []
    if len(timed_out):
        last = timed_out.iloc[-1]
        evidence.append(
            f"{len(timed_out)} of {len(facts.attempts)} attempt(s) ended DEADLINE_EXCEEDED "
            f"(last {when(last['end'], facts.zone)}: {last['detail'] or 'deadline exceeded'})"
        )
    if len(cut):
        last = cut.iloc[-1]
        evidence.append(
            f"{len(cut)} request(s) got 504 from Cloud Run after {secs(last['latency'])} "
            f"(timeout {secs(facts.run_timeout)}): {str(last['text'] or '')[:110]}"
        )
    return evidence


def _overrun_evidence(done: pd.DataFrame, running: pd.DataFrame, zone: str) -> list[str]:
    """How long the runs really took (their end lines), or how long one has gone without one."""
    evidence = []
    if len(done):
        worst = done.loc[done["seconds"].idxmax()]
        evidence.append(
            f"{len(done)} run(s) took longer than that: up to {secs(worst['seconds'])} "
            f"(run {worst['run_id']} started {when(worst['start'], zone)})"
        )
    if len(running):
        worst = running.loc[running["seconds"].idxmax()]
        evidence.append(
            f"run {worst['run_id']} started {when(worst['start'], zone)} has no end line after "
            f"{secs(worst['seconds'])}"
        )
    return evidence


def _who(timed_out: pd.DataFrame, cut: pd.DataFrame) -> str:
    """Who cut the run: Cloud Run's 504 reaches Scheduler as an HTTP 504 (DEADLINE_EXCEEDED
    too); Scheduler's own deadline leaves the attempt without an HTTP status."""
    by_scheduler = timed_out[timed_out["http"].isna()] if len(timed_out) else timed_out
    if len(cut) and len(by_scheduler):
        return "Cloud Run (504) and Scheduler (DEADLINE_EXCEEDED)"
    return "Cloud Run (504)" if len(cut) else "Scheduler (DEADLINE_EXCEEDED)"


def _deadline_fix(facts: Facts, observed: float, cut_by_run: bool, cold: str) -> str:
    deadline, timeout = facts.deadline, facts.run_timeout
    if observed > g.ATTEMPT_DEADLINE_MAX:
        return f"the job needs {secs(observed)}, over Scheduler's 30m maximum: {SPLIT}"
    want = needed(observed or min(deadline, timeout))
    want = min(want, g.ATTEMPT_DEADLINE_MAX)
    live = _live(facts)
    values = {"schedule.attempt_deadline": secs(max(want, deadline))}
    if cut_by_run or max(want, deadline) > timeout:
        values["deploy.timeout"] = secs(max(want, deadline, timeout))
    text = change(facts, values, live)
    if not observed:
        text += " (the runs' real length is unknown: opslib logs PARAMS shows when they end)"
    if cold:
        text = f"set deploy.min_instances: 1 ({see('cold start')}), or {text}"
    return text


def _cold_share(facts: Facts, timed_out: pd.DataFrame) -> str:
    """'k of the timed-out attempts were cold starts' when a cold start explains them."""
    cold = cold_requests(facts)
    cold = cold[cold["cold"]] if len(cold) else cold
    if not len(timed_out) or not len(cold):
        return ""
    hits = sum(_overlaps(cold, row.start, row.end) for row in timed_out.itertuples())
    if not hits:
        return ""
    return f"{hits} of those attempt(s) hit a cold start ({see('cold start')})"


def _overlaps(requests: pd.DataFrame, start: object, end: object) -> bool:
    """A request (logged when it ended, `latency` long) overlapping [start, end]."""
    begun = requests["timestamp"] - pd.to_timedelta(requests["latency"].fillna(0), unit="s")
    return bool(
        (
            (begun <= pd.Timestamp(end) + pd.Timedelta(seconds=1))
            & (requests["timestamp"] >= pd.Timestamp(start))
        ).any()
    )


def check_chain(facts: Facts) -> list[Finding]:
    """Scheduler's deadline within Cloud Run's timeout, above the p95 run, under 30 minutes."""
    values, source = facts.durations
    p95 = facts.p95
    basis = f"p95 {secs(p95)} over {len(values)} run(s) ({source})" if p95 is not None else ""
    chain = (
        f"attempt deadline {secs(facts.deadline)} "
        f"({'live job' if facts.job else 'spec: no job yet'}), "
        f"Cloud Run timeout {secs(facts.run_timeout)} "
        f"({'live service' if facts.service else 'spec: no service yet'})"
    )
    findings = [
        *_timeout_under_deadline(facts, chain),
        *(_over_scheduler_max(facts, basis, chain) or _p95_near_deadline(facts, basis, chain)),
        *_expected_understated(facts, basis),
    ]
    if findings:
        return findings
    room = f"; {basis}" if basis else "; no finished run to measure yet"
    return [
        ok(
            "deadline chain",
            "p95 run < attempt deadline <= Cloud Run timeout, within Scheduler's 30m",
            chain + room,
        )
    ]


def _live(facts: Facts) -> dict[str, str]:
    """The live deadline and timeout, by the spec keys `change` compares them under."""
    return {
        "schedule.attempt_deadline": secs(facts.deadline),
        "deploy.timeout": secs(facts.run_timeout),
    }


def _timeout_under_deadline(facts: Facts, chain: str) -> list[Finding]:
    """Cloud Run cutting requests before Scheduler stops waiting turns long runs into 504s."""
    deadline, timeout = facts.deadline, facts.run_timeout
    if deadline > timeout:
        return [
            Finding(
                "deadline chain",
                "error",
                f"Scheduler waits {secs(deadline)} but Cloud Run cuts requests at "
                f"{secs(timeout)}: runs between the two end in 504",
                chain,
                change(facts, {"deploy.timeout": secs(deadline)}, _live(facts)),
            )
        ]
    return []


def _over_scheduler_max(facts: Facts, basis: str, chain: str) -> list[Finding]:
    """Work over Scheduler's 30 minutes fits no deadline: only splitting it helps."""
    p95, expected = facts.p95, facts.spec.job.expected_duration
    over = [
        text
        for value, text in (
            (p95, basis),
            (expected, f"job.expected_duration {secs(expected or 0)}"),
        )
        if value is not None and value > g.ATTEMPT_DEADLINE_MAX
    ]
    if not over:
        return []
    what = "; ".join(over)
    return [
        Finding(
            "deadline chain",
            "error",
            "the work needs over 30 minutes per run",
            f"{what}; {chain}",
            SPLIT,
        )
    ]


def _p95_near_deadline(facts: Facts, basis: str, chain: str) -> list[Finding]:
    """The p95 run over the deadline (an error) or within TIGHT of it (a warning)."""
    p95, deadline = facts.p95, facts.deadline
    if p95 is None:
        return []
    if p95 >= deadline:
        severity = "error"
        finding = f"the p95 run ({secs(p95)}) does not fit the attempt deadline ({secs(deadline)})"
    elif p95 >= TIGHT * deadline:
        severity = "warning"
        finding = f"little headroom: the p95 run is {p95 / deadline:.0%} of the attempt deadline"
    else:
        return []
    fix = _raise_deadline(facts, p95, _live(facts))
    return [Finding("deadline chain", severity, finding, f"{basis}; {chain}", fix)]


def _expected_understated(facts: Facts, basis: str) -> list[Finding]:
    """A spec's expected_duration well under the real runs holds the deadline too low."""
    p95, expected = facts.p95, facts.spec.job.expected_duration
    if expected is not None and p95 is not None and p95 > expected * HEADROOM:
        return [
            Finding(
                "deadline chain",
                "info",
                f"job.expected_duration ({secs(expected)}) understates the real runs",
                basis,
                f"set job.expected_duration: {secs(math.ceil(p95))} in PARAMS (opslib check "
                "then holds the deadline against it)",
            )
        ]
    return []


def _raise_deadline(facts: Facts, p95: float, live: dict[str, str]) -> str:
    want = needed(p95)
    if want > g.ATTEMPT_DEADLINE_MAX:
        return f"no deadline leaves headroom under Scheduler's 30m: {SPLIT}"
    values = {"schedule.attempt_deadline": secs(want)}
    if want > facts.run_timeout:
        values["deploy.timeout"] = secs(want)
    return change(facts, values, live)


def cold_requests(facts: Facts) -> pd.DataFrame:
    """The service's requests that reached an instance, with `cold` True for the first one a
    new instance served (by instanceId when request logs carry it, else by time and revision).
    """
    requests = facts.requests
    if requests.empty:
        return requests.assign(cold=pd.Series(dtype=bool))
    served = requests[~requests["http_status"].isin((401, 403))].copy()
    served["cold"] = False
    e = facts.entries
    text = e["text"].fillna("")
    starts = e[
        (e["log"] == SYSTEM_LOG)
        & text.str.startswith("Starting new instance")
        & text.str.contains("AUTOSCALING")
    ]
    if starts.empty or served.empty:
        return served
    if served["instance"].notna().any():
        fresh = served[served["instance"].isin(set(starts["instance"].dropna()))]
        first = fresh.groupby("instance", sort=False).head(1).index
        served.loc[first, "cold"] = True
        return served
    begun = served["timestamp"] - pd.to_timedelta(served["latency"].fillna(0), unit="s")
    for start in starts.itertuples():
        waiting = (
            (served["revision"] == start.revision)
            & (served["timestamp"] >= start.timestamp)
            & (begun <= start.timestamp + pd.Timedelta(seconds=1))
            & ~served["cold"]
        )
        if waiting.any():
            served.loc[waiting.idxmax(), "cold"] = True
    return served


def check_cold_start(facts: Facts) -> list[Finding]:
    """First requests of new instances against warm ones, and what min instances would cost."""
    served = cold_requests(facts)
    minimum = facts.min_instances
    cpu, memory = facts.cpu_memory
    one = pricing.min_instance_cost(cpu, memory, facts.spec.region, 1)
    cold = served[served["cold"]] if len(served) else served
    if cold.empty:
        if minimum:
            kept = pricing.min_instance_cost(cpu, memory, facts.spec.region, minimum)
            what = f"min instances {minimum} keep an instance warm; no cold start in the window"
            what += "" if facts.service else " (the spec's: no service yet)"
            return [ok("cold start", what, f"that costs {kept.explain()}")]
        what = "min instances 0 and no cold start in the window"
        return [ok("cold start", what, f"min instances 1 would cost {one.explain()}")]
    warm = served[~served["cold"] & (served["http_status"] < 400)]
    cold_median, warm_median = cold["latency"].median(), warm["latency"].median()
    failed = _cold_failures(facts, cold)
    penalty = cold_median - (warm_median if len(warm) else 0.0)
    evidence = (
        f"{len(cold)} cold start(s) (the first request of a new instance, after 'Starting new "
        f"instance. Reason: AUTOSCALING'): median {secs(cold_median)}, slowest "
        f"{secs(cold['latency'].max())}; {len(warm)} warm request(s): median "
        f"{secs(warm_median) if len(warm) else 'n/a'}; live min instances {minimum}, "
        f"{cpu} vCPU / {g.format_memory(memory)}"
    )
    if failed:
        evidence += "; failed: " + ", ".join(failed)
    evidence += f"; each warm instance costs {one.explain()}"
    if failed:
        severity = "warning" if minimum else "error"
        finding = (
            f"{len(failed)} cold start(s) failed: a new instance was too slow for the "
            f"{secs(facts.deadline)} attempt deadline"
        )
    elif penalty > COLD_PENALTY:
        severity = "info" if minimum else "warning"
        finding = f"cold starts add {secs(penalty)} to the first request of a new instance"
    else:
        severity = "info"
        finding = f"cold starts happen but cost little ({secs(max(penalty, 0.0))} extra)"
    live = {"deploy.min_instances": str(minimum)}
    keep_warm = change(facts, {"deploy.min_instances": str(minimum + 1)}, live)
    fix = (
        f"{keep_warm} (about ${one.monthly:,.2f}/month per warm instance); or make starting "
        "faster: keep module-level imports light (import heavy libraries inside the job) and "
        f"turn on startup CPU boost (gcloud run services update {facts.spec.service} "
        f"--region={facts.spec.region} --cpu-boost)"
    )
    return [Finding("cold start", severity, finding, evidence, fix)]


def _cold_failures(facts: Facts, cold: pd.DataFrame) -> list[str]:
    """Cold requests that failed: 5xx, longer than the deadline, or inside a failed attempt."""
    attempts = facts.attempts
    bad = attempts[attempts["code"] != "OK"] if len(attempts) else attempts
    out = []
    for row in cold.itertuples():
        begun = row.timestamp - pd.Timedelta(
            seconds=row.latency if row.latency == row.latency else 0
        )
        inside = (
            bad[(bad["start"] <= row.timestamp) & (bad["end"] >= begun - pd.Timedelta(seconds=1))]
            if len(bad)
            else bad
        )
        took = f"{when(begun, facts.zone)} took {secs(row.latency)}"
        if len(inside):
            out.append(f"{took}, attempt {inside.iloc[0]['code']}")
        elif row.http_status >= 500 or row.latency >= facts.deadline:
            out.append(f"{took}, HTTP {int(row.http_status)}")
    return out
