"""Fires Scheduler jobs: on their cron and time zone, with Scheduler's headers, OIDC token,
attempt deadline and RetryConfig backoff, one execution of a job at a time.

A target on run.googleapis.com (or a regional REGION-run.googleapis.com), such as a Cloud
Run job's `jobs/J:run`, is served by localcloud's own Run API, never the internet. With
`oauthToken` the call carries an access token localcloud signs for the account and scope
(default cloud-platform); with `oidcToken` an ID token, which Google's APIs refuse (401).
Each attempt writes AttemptStarted / AttemptFinished entries to
`cloudscheduler.googleapis.com/executions`. Time comes from localcloud's clock: `advance`
walks the clock from event to event, so a week of runs takes seconds and each run carries
its own scheduled time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from opslib.localcloud import tokens
from opslib.localcloud.clock import duration_seconds, parse_rfc3339, rfc3339
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.errors import RPC_CODE, RPC_OF_HTTP
from opslib.localcloud.scheduler import rules
from opslib.localcloud.scheduler.jobs import Scheduler
from opslib.localcloud.schema import b64decode

LOG_ID = "cloudscheduler.googleapis.com%2Fexecutions"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# Google APIs localcloud serves itself: the Cloud Run Admin API, global or regional.
RUN_API = re.compile(r"^https://(?:[a-z0-9-]+-)?run\.googleapis\.com(?::443)?(/.*)$")
TYPE = "type.googleapis.com/google.cloud.scheduler.logging."


@dataclass
class Pending:
    """A retry waiting for its backoff to pass."""

    due: float
    attempt: int
    first: float
    schedule_time: datetime


def backoff(retry: int, minimum: float, maximum: float, doublings: int) -> float:
    """Scheduler's backoff: doubles `doublings` times, then grows linearly, capped at max."""
    if retry - 1 <= doublings:
        interval = minimum * 2 ** (retry - 1)
    else:
        interval = minimum * 2**doublings * (retry - doublings)
    return min(interval, maximum)


class Runner:
    """The firing loop; `advance` and `run_now` are what the control API and :run call."""

    def __init__(self, cloud: Cloud, scheduler: Scheduler) -> None:
        self.cloud, self.scheduler = cloud, scheduler
        self.running: dict[str, asyncio.Task[None]] = {}
        self.retries: dict[str, Pending] = {}
        self.forced: set[str] = set()
        self.advancing = False
        self.session: aiohttp.ClientSession | None = None
        self.loop_task: asyncio.Task[None] | None = None
        scheduler.runner = self

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        self.loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.loop_task:
            self.loop_task.cancel()
        for task in list(self.running.values()):
            task.cancel()
        if self.session:
            await self.session.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            if not self.advancing:
                self.launch_due()

    def init(self) -> None:
        """Forget pending retries and forced runs (after a reset)."""
        self.retries.clear()
        self.forced.clear()

    def run_now(self, name: str) -> None:
        """:run — fire at once, even if the job is paused or already running."""
        self.forced.add(name)
        if not self.advancing:
            self.launch_due()

    def _due(self, name: str, job: dict[str, Any]) -> float | None:
        if name in self.forced:
            return float("-inf")
        if name in self.retries:
            return self.retries[name].due
        if job["state"] == "ENABLED" and job.get("scheduleTime"):
            return parse_rfc3339(job["scheduleTime"]).timestamp()
        return None

    def next_event(self) -> float | None:
        times = [t for n, j in self.scheduler.jobs.items() if (t := self._due(n, j)) is not None]
        return min(times, default=None)

    def launch_due(self) -> list[asyncio.Task[None]]:
        now, tasks = self.cloud.clock.time(), []
        for name, job in list(self.scheduler.jobs.items()):
            due = self._due(name, job)
            if due is None or due > now or name in self.running:
                continue
            forced = name in self.forced
            self.forced.discard(name)
            pending = self.retries.pop(name, None)
            if pending is None:
                when = self.cloud.clock.now() if forced else parse_rfc3339(job["scheduleTime"])
                pending = Pending(now, 1, now, when)
                if not forced:
                    self.scheduler.reschedule(job)
            task = asyncio.create_task(self._attempt(name, pending))
            self.running[name] = task
            task.add_done_callback(lambda _, n=name: self.running.pop(n, None))
            tasks.append(task)
        if tasks:
            self.scheduler.save()
        return tasks

    async def advance(self, seconds: float) -> int:
        """Move the clock forward, firing every run and retry due on the way; returns the count."""
        target, fired = self.cloud.clock.time() + seconds, 0
        self.advancing = True
        try:
            while True:
                await asyncio.gather(*self.running.values(), return_exceptions=True)
                event = self.next_event()
                if event is None or event > target:
                    break
                if event > self.cloud.clock.time():
                    self.cloud.clock.advance(event - self.cloud.clock.time())
                tasks = self.launch_due()
                fired += len(tasks)
                await asyncio.gather(*tasks, return_exceptions=True)
            if target > self.cloud.clock.time():
                self.cloud.clock.advance(target - self.cloud.clock.time())
        finally:
            self.advancing = False
            self.cloud.save_clock()
        return fired

    async def _attempt(self, name: str, pending: Pending) -> None:
        job = self.scheduler.jobs.get(name)
        if job is None:
            return
        target = job["httpTarget"]
        started = self.cloud.clock.now()
        self._log(job, "AttemptStarted", "INFO", {"url": target["uri"]})
        status, code, message = await self._call(job, pending)
        job = self.scheduler.jobs.get(name)
        if job is None:
            return
        # "The time the last job attempt started", written with the status when it ends.
        job["lastAttemptTime"] = rfc3339(started)
        job["status"] = {} if code == "OK" else {"code": RPC_CODE[code], "message": message}
        finished: dict[str, Any] = {"url": target["uri"]}
        if code != "OK":
            finished["status"] = code
            finished["debugInfo"] = message
        http = {"status": status} if status else None
        self._log(job, "AttemptFinished", "INFO" if code == "OK" else "ERROR", finished, http)
        if code != "OK":
            self._plan_retry(name, job, pending)
        self.scheduler.save()

    async def _call(self, job: dict[str, Any], pending: Pending) -> tuple[int | None, str, str]:
        """One HTTP attempt: (HTTP status or None, rpc code name, message)."""
        target = job["httpTarget"]
        uri = self._route(target["uri"])
        if not _is_local(uri):
            return None, "UNAVAILABLE", f"localcloud only calls targets on this machine, not {uri}"
        headers = self._headers(job, pending)
        body = b64decode(target["body"], "body") if target.get("body") else None
        if body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        deadline = duration_seconds(job["attemptDeadline"], 180)
        assert self.session is not None
        try:
            async with self.session.request(
                target["httpMethod"],
                uri,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=deadline),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            return None, "DEADLINE_EXCEEDED", f"The attempt deadline of {deadline:g}s was exceeded."
        except aiohttp.ClientError as exc:
            return None, "UNAVAILABLE", f"URL_UNREACHABLE: {exc}"
        if 200 <= status < 300:
            return status, "OK", ""
        code = RPC_OF_HTTP.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        return (
            status,
            code,
            f"URL_ERROR-ERROR_{code}. Original HTTP response code number = {status}",
        )

    def _route(self, uri: str) -> str:
        """A Run Admin API URL goes to localcloud's own Run API; any other stays as it is."""
        match = RUN_API.match(uri)
        return self.cloud.base_url + match.group(1) if match else uri

    def _headers(self, job: dict[str, Any], pending: Pending) -> dict[str, str]:
        target = job["httpTarget"]
        zone = rules.zone(job.get("timeZone"))
        scheduled = pending.schedule_time.astimezone(zone).isoformat(timespec="seconds")
        headers = {
            **target.get("headers", {}),
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": job["name"].rsplit("/", 1)[-1],
            "X-CloudScheduler-ScheduleTime": scheduled.replace("+00:00", "Z")
            if zone.key == "UTC"
            else scheduled,
        }
        token = self._token(target)
        if token:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _token(self, target: dict[str, Any]) -> str:
        """The target's OIDC (ID) or OAuth (access) token, minted for this attempt."""
        oidc, oauth = target.get("oidcToken"), target.get("oauthToken")
        if oidc:
            audience = oidc.get("audience") or target["uri"]
            return tokens.mint(self.cloud, oidc.get("serviceAccountEmail", ""), audience)
        if oauth:
            scope = oauth.get("scope") or CLOUD_PLATFORM
            return tokens.mint_access(self.cloud, oauth.get("serviceAccountEmail", ""), scope)
        return ""

    def _plan_retry(self, name: str, job: dict[str, Any], pending: Pending) -> None:
        retry = job["retryConfig"]
        if pending.attempt > int(retry["retryCount"]):
            return
        wait = backoff(
            pending.attempt,
            duration_seconds(retry["minBackoffDuration"]),
            duration_seconds(retry["maxBackoffDuration"]),
            int(retry["maxDoublings"]),
        )
        due = self.cloud.clock.time() + wait
        limit = duration_seconds(retry["maxRetryDuration"])
        if limit and due - pending.first > limit:
            return
        next_run = job.get("scheduleTime")
        if next_run and due >= parse_rfc3339(next_run).timestamp():
            return  # retries stop at the next scheduled run
        self.retries[name] = Pending(due, pending.attempt + 1, pending.first, pending.schedule_time)

    def _log(
        self,
        job: dict[str, Any],
        kind: str,
        severity: str,
        payload: dict[str, Any],
        http: dict[str, Any] | None = None,
    ) -> None:
        project, _, location, _, job_id = job["name"].split("/")[1:6]
        entry: dict[str, Any] = {
            "logName": f"projects/{project}/logs/{LOG_ID}",
            "resource": {
                "type": "cloud_scheduler_job",
                "labels": {"project_id": project, "location": location, "job_id": job_id},
            },
            "severity": severity,
            "jsonPayload": {
                "@type": TYPE + kind,
                "jobName": job["name"],
                "targetType": "HTTP",
                **payload,
            },
        }
        if http:
            entry["httpRequest"] = http
        self.cloud.logs.write(entry)


def _is_local(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
