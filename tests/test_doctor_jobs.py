"""opslib doctor on a Cloud Run job (`runtime: job`), each condition produced for real.

Every scenario is a throwaway project (its own service/ and parameters/) whose job runs as a
Cloud Run job on the tests' localcloud, deployed, scheduled and verified with the `opslib`
command: the shipped nightly-backfill (healthy), a task that always raises, a task that sleeps
past its job.task_timeout, a Scheduler account whose run.jobs.run binding was removed, a
Scheduler job sending an OIDC token to jobs:run, and two executions at once (the second one's
tasks skip). Each test reads `opslib doctor`'s printed findings, then applies the fix exactly
as printed (the command, or the spec key and value in the file it names) and checks that it
worked. The scenarios are produced concurrently (their waits are real) in one fixture.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lc
import pandas as pd
import pytest
import yaml
from project import add_params, make_project

from conftest import DELETE, ROOT, tool
from opslib.cloud.session import open_session
from opslib.doctor import diagnose as doctor
from opslib.spec import names

NIGHTLY = ROOT / "parameters" / "nightly-backfill.yaml"
ANCHOR = "    # Each task takes its share"
JOB_CHECKS = {
    "cloud run job",
    "scheduler job",
    "auth",
    "tasks",
    "task timeout",
    "rate limit (429)",
    "overlap",
}


@dataclass
class Project:
    """One automation in a throwaway project, and what producing its condition printed."""

    root: Path
    params: Path
    extra: dict = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The parameters file as a command takes it from the project root."""
        return self.params.relative_to(self.root).as_posix()

    @property
    def job(self) -> str:
        return yaml.safe_load(self.params.read_text())["job"]["name"]

    @property
    def module(self) -> Path:
        return self.root / "service" / "scripts" / "batch" / f"{self.job.replace('-', '_')}.py"


def opslib(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPSLIB_LOCALCLOUD_URL": lc.server().url}
    return subprocess.run(
        [tool("opslib"), *args], capture_output=True, text=True, cwd=root, env=env, timeout=600
    )


def run_printed(p: Project, command: str) -> subprocess.CompletedProcess:
    """A command exactly as the doctor printed it, from the project root."""
    word, *args = shlex.split(command)
    assert word == "opslib", command
    return opslib(p.root, *args)


def printed(out: str) -> str:
    """The doctor's text with its wrapped lines joined (it breaks lines at spaces only)."""
    return re.sub(r"\n {12}", " ", out)


def finding(out: str, severity: str, check: str) -> dict[str, str]:
    """One printed finding: its text, evidence and fix."""
    block = re.search(
        rf"^{severity.upper()} +\[{re.escape(check)}\] (.*)\n  evidence: (.*)\n  fix: +(.*)$",
        printed(out),
        re.M,
    )
    assert block, out
    return dict(zip(("finding", "evidence", "fix"), block.groups(), strict=True))


def command_in(fix: str) -> str:
    found = re.findall(r"`(opslib [^`]+)`", fix)
    assert found, fix
    return found[0]


def diagnose(p: Project) -> pd.DataFrame:
    session = open_session(p.params)
    return doctor.diagnose(session, since=timedelta(hours=1))


def assert_sees_are_raised(findings: pd.DataFrame) -> None:
    """Every "see [X]" points at a finding of the same output, never at its own."""
    raised = set(doctor.problems(findings)["check"])
    for row in findings.itertuples():
        for pointed in re.findall(r"see \[([^\]]+)\]", row.fix):
            assert pointed in raised and pointed != row.check, (row.check, row.fix)


def write_module(p: Project, code: str) -> None:
    """Step 1's module with `code` at the start of the task's work."""
    text = p.module.read_text()
    assert ANCHOR in text
    p.module.write_text(text.replace(ANCHOR, f"{code}{ANCHOR}", 1))


def small(tmp: Path, stem: str, **job: object) -> Project:
    """A project with a short Cloud Run job: one task, no retry, a 60s task timeout."""
    root = make_project(tmp / "project")
    job = {
        "name": lc.unique(stem),
        "runtime": "job",
        "expected_duration": DELETE,
        "task_timeout": "60s",
        "tasks": 1,
        "parallelism": 0,
        "max_retries": 0,
        **job,
    }
    params = add_params(root, stem, NIGHTLY, service=lc.unique("svc"), job=job)
    return Project(root, params)


def steps(p: Project, which: str, passes: bool = True) -> subprocess.CompletedProcess:
    done = opslib(p.root, "run", p.file, "--steps", which)
    assert (done.returncode == 0) is passes, done.stdout + done.stderr
    return done


# --- the scenarios -------------------------------------------------------------------------


def healthy(tmp: Path) -> Project:
    """The shipped nightly-backfill (2 h expected, 4 tasks, 2 at once), steps 1-5."""
    root = make_project(tmp / "project")
    params = add_params(
        root, "nightly", NIGHTLY, service=lc.unique("svc"), job={"name": lc.unique("night")}
    )
    p = Project(root, params)
    steps(p, "1-5")
    return p


def failing(tmp: Path) -> Project:
    """Task 1 of 2 raises on every attempt (one retry): verify fails."""
    p = small(tmp, "failing", tasks=2, max_retries=1)
    steps(p, "1-2")
    p.extra["original"] = p.module.read_text()
    write_module(p, "    if task_index == 1:\n        raise RuntimeError('archive unreachable')\n")
    p.extra["run"] = steps(p, "3-5", passes=False)
    return p


def too_slow(tmp: Path) -> Project:
    """The task sleeps 5s; job.task_timeout is 3s: Cloud Run stops it."""
    p = small(tmp, "slow", task_timeout="3s")
    steps(p, "1-2")
    write_module(p, "    import time\n\n    time.sleep(5)\n")
    steps(p, "3-5", passes=False)
    return p


def no_run_permission(tmp: Path) -> Project:
    """The scheduler's roles/run.invoker binding on the job was removed (set_iam_policy)."""
    p = small(tmp, "iam")
    steps(p, "1-5")
    session = open_session(p.params)
    jobs, name = session.clients.jobs, names.run_job(session.spec)
    policy = jobs.get_iam_policy(request={"resource": name})
    del policy.bindings[:]
    jobs.set_iam_policy(request={"resource": name, "policy": policy})
    verified = opslib(p.root, "verify", p.file, "--quiet")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    p.extra["verify"] = verified.stdout
    return p


def oidc(tmp: Path) -> Project:
    """Someone switched the Scheduler job to an OIDC token (as for a service)."""
    p = small(tmp, "oidc")
    steps(p, "1-5")
    session = open_session(p.params)
    scheduler = session.clients.scheduler
    job = scheduler.get_job(name=names.scheduler_job(session.spec))
    account = job.http_target.oauth_token.service_account_email
    job.http_target.oidc_token = {"service_account_email": account, "audience": "x"}
    scheduler.update_job(job=job)
    assert opslib(p.root, "verify", p.file, "--quiet").returncode == 1
    return p


def overlapping(tmp: Path) -> Project:
    """Two executions 1.5s apart; each task works 4s: the second one's tasks skip."""
    p = small(tmp, "overlap", tasks=2, parallelism=2)
    steps(p, "1-2")
    write_module(p, "    import time\n\n    time.sleep(4)\n")
    steps(p, "3-4")
    session = open_session(p.params)
    clients, name = session.clients, names.run_job(session.spec)
    first = clients.jobs.run_job(name=name).metadata.name
    time.sleep(1.5)
    second = clients.jobs.run_job(name=name).metadata.name
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ended = [clients.executions.get_execution(name=e).completion_time for e in (first, second)]
        if all(ended):
            break
        time.sleep(0.5)
    p.extra["first"] = names.short(first)
    return p


SCENARIOS: dict[str, Callable[[Path], Project]] = {
    "healthy": healthy,
    "failing": failing,
    "slow": too_slow,
    "iam": no_run_permission,
    "oidc": oidc,
    "overlap": overlapping,
}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory):
    """All scenarios, started at once; a test waits for the one it needs."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPSLIB_LOCALCLOUD_URL", lc.server().url)
        with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
            futures: dict[str, Future[Project]] = {
                name: pool.submit(fn, tmp_path_factory.mktemp(name))
                for name, fn in SCENARIOS.items()
            }
            yield futures
        for future in futures.values():
            if future.exception() is None:
                session = open_session(future.result().params)
                clients, spec = session.clients, session.spec
                clients.scheduler.delete_job(name=names.scheduler_job(spec))
                clients.jobs.delete_job(name=names.run_job(spec)).result(timeout=60)


def doctor_says(p: Project, code: int) -> str:
    done = opslib(p.root, "doctor", p.file, "--since", "1h")
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


# --- the tests -----------------------------------------------------------------------------


def test_a_healthy_job_gets_job_checks_and_nothing_is_wrong(scenarios):
    p = scenarios["healthy"].result()
    out = doctor_says(p, 0)
    assert out.startswith("nothing is wrong"), out
    findings = diagnose(p)
    assert doctor.problems(findings).empty, findings.to_string()
    assert set(findings["check"]) == JOB_CHECKS
    for wrong in ("Cloud Run service", "route", "OIDC", "cold start", "run the work as"):
        assert wrong not in out, wrong
    auth = findings[findings["check"] == "auth"].iloc[0]["finding"]
    assert "OAuth token" in auth and "may run the job" in auth
    assert "4 task(s), 2 at once" in out and "every task succeeded" in out
    assert "KST" in out and not re.search(r"\d\d:\d\d:\d\dZ", out)  # the job's clock
    queries = doctor.queries(open_session(p.params).spec)
    assert queries["gcloud"].str.contains('resource.type="cloud_run_job"').any()
    assert not queries["gcloud"].str.contains("cloud_run_revision").any()


def test_a_task_that_always_fails_names_it_and_the_fix_works(scenarios):
    p = scenarios["failing"].result()
    assert "fix: task 1 raised it" in p.extra["run"].stdout + p.extra["run"].stderr  # verify
    out = doctor_says(p, 1)
    tasks = finding(out, "error", "tasks")
    assert re.match(r"task 1 of execution \S+ failed after 2 attempt\(s\): ", tasks["finding"])
    assert "RuntimeError: archive unreachable" in tasks["finding"]
    assert "1 of 2 task(s) succeeded, 1 failed, 1 retried" in tasks["evidence"]
    module = p.module.relative_to(p.root).as_posix()
    assert f"fix {module}, then run `opslib run {p.file} --steps 3-5`" in tasks["fix"]
    assert_sees_are_raised(diagnose(p))

    p.module.write_text(p.extra["original"])  # the repair
    fixed = run_printed(p, command_in(tasks["fix"]))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    after = diagnose(p)
    assert not doctor.has_errors(after), after.to_string()
    assert after[after["severity"].isin(("error", "warning"))].empty, after.to_string()
    assert doctor_says(p, 0)


def test_a_task_timeout_below_the_run_time_names_the_key_and_a_value_that_works(scenarios):
    p = scenarios["slow"].result()
    out = doctor_says(p, 1)
    timeout = finding(out, "error", "task timeout")
    assert "ran into the 3s task timeout" in timeout["finding"]
    assert "The configured timeout was reached." in timeout["evidence"]
    ran = float(re.search(r" ran ([\d.]+)s and was stopped", timeout["evidence"]).group(1))
    key = re.search(r"set job\.task_timeout: (\d+)s in (\S+), then run `", timeout["fix"])
    assert key, timeout["fix"]
    value, file = int(key.group(1)), key.group(2)
    assert file == p.file and value > ran
    tasks = finding(out, "error", "tasks")
    assert "ran into its 3s timeout" in tasks["finding"]
    assert tasks["fix"].startswith("see [task timeout] (")
    assert_sees_are_raised(diagnose(p))

    data = yaml.safe_load((p.root / file).read_text())
    data["job"]["task_timeout"] = f"{value}s"
    (p.root / file).write_text(yaml.safe_dump(data, sort_keys=False))
    fixed = run_printed(p, command_in(timeout["fix"]))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "PASSED" in fixed.stdout
    after = diagnose(p)
    assert not doctor.has_errors(after), after.to_string()


def test_a_scheduler_account_without_run_jobs_run_is_named_with_the_command(scenarios):
    p = scenarios["iam"].result()
    assert "lacks run.jobs.run on Cloud Run job" in p.extra["verify"]  # verify's own diagnosis
    out = doctor_says(p, 1)
    account = open_session(p.params).spec.invoker_account
    auth = finding(out, "error", "auth")
    assert auth["finding"].startswith(f"{account} lacks run.jobs.run on Cloud Run job {p.job}")
    assert "1 attempt(s) ended PERMISSION_DENIED" in auth["evidence"]
    assert f"serviceAccount:{account} roles/run.invoker" in auth["fix"]
    assert f"`opslib deploy {p.file}`" in auth["fix"]
    scheduler = finding(out, "error", "scheduler job")
    assert scheduler["fix"].startswith("see [auth] (")
    assert_sees_are_raised(diagnose(p))

    granted = run_printed(p, command_in(auth["fix"]))
    assert granted.returncode == 0, granted.stdout + granted.stderr
    verified = opslib(p.root, "verify", p.file, "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_oidc_token_to_jobs_run_is_the_error_and_step_4_fixes_it(scenarios):
    p = scenarios["oidc"].result()
    out = doctor_says(p, 1)
    auth = finding(out, "error", "auth")
    assert "sends an OIDC ID token" in auth["finding"] and "OAuth" in auth["finding"]
    assert "1 attempt(s) ended UNAUTHENTICATED" in auth["evidence"]
    assert f"`opslib schedule {p.file}`" in auth["fix"]
    assert_sees_are_raised(diagnose(p))

    rescheduled = run_printed(p, command_in(auth["fix"]))
    assert rescheduled.returncode == 0, rescheduled.stdout + rescheduled.stderr
    verified = opslib(p.root, "verify", p.file, "--quiet")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert not doctor.has_errors(diagnose(p))


def test_skipped_executions_come_from_the_tasks_logs(scenarios):
    p = scenarios["overlap"].result()
    findings = diagnose(p)
    overlap = findings[findings["check"] == "overlap"]
    assert list(overlap["severity"]) == ["info"], overlap.to_string()
    row = overlap.iloc[0]
    assert row["finding"].startswith(f"1 execution(s) of {p.job} skipped their work")
    still = f"execution {p.extra['first']} of {p.job} is still running (overlap: skip)"
    assert still in row["evidence"]
    assert "job.overlap: queue" in row["fix"]
    assert not doctor.has_errors(findings), findings.to_string()
