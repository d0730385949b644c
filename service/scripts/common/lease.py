"""Overlap guard: one run of a job at a time across instances, held as a lease object in GCS.

Why: Scheduler never overlaps its own attempts, but a manual `:run`, a retry after a deadline or
a second schedule can start a job while its last run still works on another instance, which an
in-process flag cannot see. The lease is the object `leases/<job>.json` in the bucket named by
OPSLIB_LEASE_BUCKET (no bucket: the guard is off, and says so once), written over the GCS JSON
API with the instance's metadata-server token (as secrets.py does) and plain `requests`.

Protocol, on Cloud Storage's request preconditions (cloud.google.com/storage/docs/
request-preconditions: `ifGenerationMatch=0` = only if absent; unmet = 412 Precondition Failed)
and learnt from (not copied from) these implementations:
- acquire = create with `ifGenerationMatch=0`, "only if absent": the whole of mco-gh/gcslock
  (mutex.go, ContextLock) and the first step of every lock below;
- on 412, read the lease. Not expired: the run is skipped. Expired (a crashed or overrunning
  holder): take it over by overwriting with `ifGenerationMatch=<its generation>`, so of several
  takers exactly one wins and the rest read the winner; this is ncruces/go-gcp gmutex/gmutex.go
  (LockData/createObject). FooBarWidget/distributed-lock-google-cloud-storage-ruby
  (lib/distributed-lock-google-cloud-storage/lock.rb, Hongli Lai's algorithm) instead deletes a
  stale lock with ifMetagenerationMatch and creates again; one conditional write leaves no gap,
  and generations are less guessable than metagenerations (ncruces in that repo's issue #2);
- release = delete with `ifGenerationMatch=<our generation>`: a run whose lease expired and was
  taken over never deletes the new holder's lease (gcslock's unconditional delete would);
- a create retried after a lost answer finds its own run id in the lease and keeps it, as lock.rb
  recognises its own identity;
- `overlap: queue` polls with reads, not failed writes, and backs off (gmutex.go; ncruces's point
  in issue #2 that a write loop contends with the holder's delete).
No refresher thread (lock.rb has one): the lease lives for the attempt deadline, after which
Scheduler has given up on the run anyway; a run that outlives it may overlap the next one, and
both sides log it (status `took_over`, `lease_lost`).

Time: expiry = the object's `updated` (GCS's clock at the write) + the lease's ttl; "now" is the
`Date` header of the read (GCS's clock too, as gmutex.go's expired() does), refined by this
instance's clock within Date's one-second resolution. A skewed instance clock thus moves the
verdict by at most about a second, and a lease is never judged on one instance's clock alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:  # requests and tenacity load on first use: cold starts stay Flask-only
    import requests

    from scripts.common.http import RetryPolicy
    from scripts.common.logs import JobRun

BUCKET_ENV = "OPSLIB_LEASE_BUCKET"
API = "https://storage.googleapis.com"
METADATA = "metadata.google.internal"
PREFIX = "leases/"
MODES = ("allow", "skip", "queue")
ROUNDS = 4  # create/read/take-over rounds before a churning lease counts as held
QUEUE_PAUSE, QUEUE_PAUSE_MAX = 0.5, 10.0

log = logging.getLogger(__name__)
_local = threading.local()
_token_lock = threading.Lock()
_token: dict[str, Any] = {}
_said_off: set[str] = set()


class LeaseError(RuntimeError):
    """Cloud Storage answered something the protocol does not expect."""


@dataclass(frozen=True)
class Lease:
    """A lease as stored: whose run holds the job, and from when (GCS time) for how long."""

    job: str
    run_id: str
    holder: str
    generation: str
    written: datetime
    ttl: float

    @property
    def expires(self) -> datetime:
        return self.written + timedelta(seconds=self.ttl)

    def summary(self) -> dict[str, str]:
        """What a skipped run reports about the run it gave way to."""
        return {
            "job": self.job,
            "holder_run_id": self.run_id,
            "holder": self.holder,
            "acquired": _stamp(self.written),
            "expires": _stamp(self.expires),
        }


@dataclass(frozen=True)
class Attempt:
    """What an acquire got: our lease, or the lease of the run holding the job."""

    acquired: bool
    lease: Lease
    replaced: Lease | None = None  # the expired lease we took over
    waited: float = 0.0


@dataclass
class Guard:
    """The route's view of the guard: run, or answer `skipped` with the holder."""

    skipped: bool = False
    holder: Lease | None = None
    lease: Lease | None = None
    off: str | None = None

    def response(self, make_response: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """The seed's response shape plus `skipped: true`: a 200 Scheduler will not retry."""
        result = self.holder.summary() if self.holder else {}
        return {**make_response("skipped", result=result), "skipped": True}


def lease_bucket() -> str | None:
    return os.environ.get(BUCKET_ENV) or None


def object_name(job: str) -> str:
    return f"{PREFIX}{job}.json"


def acquire(job: str, run_id: str, ttl_seconds: float, *, bucket: str | None = None) -> Attempt:
    """One try: create the lease, or take over an expired one, or report who holds it."""
    bucket = bucket or _required_bucket()
    expected, replaced, current = "0", None, None
    for _ in range(ROUNDS):
        written = _write(bucket, job, run_id, ttl_seconds, expected)
        if written is not None:
            return Attempt(True, written, replaced)
        current, now = read(job, bucket=bucket)
        if current is None:  # released between our create and our read
            expected, replaced = "0", None
        elif current.run_id == run_id:  # our own create, retried after a lost answer
            return Attempt(True, current, replaced)
        elif now < current.expires:
            return Attempt(False, current)
        else:
            expected, replaced = current.generation, current
    if current is None:
        raise LeaseError(f"lease {object_name(job)} kept changing")
    return Attempt(False, current)


def wait(
    job: str, run_id: str, ttl_seconds: float, wait_seconds: float, *, bucket: str | None = None
) -> Attempt:
    """`overlap: queue`: acquire, polling with backoff (reads only) for up to `wait_seconds`."""
    bucket = bucket or _required_bucket()
    started = time.monotonic()
    pause = QUEUE_PAUSE
    while True:
        attempt = acquire(job, run_id, ttl_seconds, bucket=bucket)
        waited = time.monotonic() - started
        if attempt.acquired or waited >= wait_seconds:
            return Attempt(attempt.acquired, attempt.lease, attempt.replaced, waited)
        pause = _until_free(job, bucket, started + wait_seconds, pause)


def _until_free(job: str, bucket: str, until: float, pause: float) -> float:
    """Sleep and re-read (cheaper than failed writes) until the lease is gone or expired."""
    while time.monotonic() < until:
        time.sleep(max(0.0, min(pause, until - time.monotonic())))
        pause = min(pause * 2, QUEUE_PAUSE_MAX)
        current, now = read(job, bucket=bucket)
        if current is None or now >= current.expires:
            break
    return pause


def release(lease: Lease, *, bucket: str | None = None) -> bool:
    """Delete our lease, only at our generation; False if it was taken over or is gone."""
    bucket = bucket or _required_bucket()
    answer = _send(
        "DELETE", _object_url(bucket, lease.job), {"ifGenerationMatch": lease.generation}
    )
    return answer.status_code == 204


def read(job: str, *, bucket: str | None = None) -> tuple[Lease | None, datetime]:
    """The job's lease (None if there is none) and GCS's time of the answer."""
    bucket = bucket or _required_bucket()
    answer = _send("GET", _object_url(bucket, job), {})
    if answer.status_code == 404:
        return None, _server_now(answer)
    return _lease(answer.json()), _server_now(answer)


@contextmanager
def guard(run: JobRun, deadline_seconds: float, mode: str = "skip") -> Iterator[Guard]:
    """Hold the job's lease around a run; a run that finds it held is skipped (or queued)."""
    if mode not in MODES:
        raise ValueError(f"overlap mode {mode!r}: use one of {', '.join(MODES)}")
    bucket = lease_bucket()
    if mode == "allow" or bucket is None:
        yield _off(mode, bucket)
        return
    attempt = _try(run, bucket, deadline_seconds, mode)
    if attempt is None:
        yield Guard(off="lease_error")
        return
    if not attempt.acquired:
        _log_skipped(run, attempt)
        yield Guard(skipped=True, holder=attempt.lease)
        return
    _log_acquired(run, attempt)
    try:
        yield Guard(lease=attempt.lease)
    finally:
        _release_logged(run, attempt.lease, bucket)


def _try(run: JobRun, bucket: str, deadline: float, mode: str) -> Attempt | None:
    """Acquire (or wait for) the lease; on a Cloud Storage failure run unguarded, logged."""
    import requests

    try:
        if mode == "queue":
            return wait(run.job, run.run_id, deadline, deadline, bucket=bucket)
        return acquire(run.job, run.run_id, deadline, bucket=bucket)
    except (requests.RequestException, LeaseError, ValueError, KeyError) as exc:
        run.logger.warning(
            "overlap guard unavailable, running unguarded: %s: %s",
            type(exc).__name__,
            exc,
            extra={"status": "lease_error"},
        )
        return None


def _off(mode: str, bucket: str | None) -> Guard:
    """No guard: `overlap: allow`, or no bucket configured (said once per process)."""
    reason = "overlap: allow" if mode == "allow" else f"{BUCKET_ENV} is not set"
    if bucket is None and reason not in _said_off:
        _said_off.add(reason)
        log.info("overlap guard off: %s, so runs of a job may overlap", reason)
    return Guard(off=reason)


def _log_skipped(run: JobRun, attempt: Attempt) -> None:
    holder = attempt.lease
    extra: dict[str, Any] = {"status": "skipped"}
    if attempt.waited:
        extra["wait_s"] = round(attempt.waited, 3)
    run.logger.info(
        "skipped: %s is still running as run %s on %s (lease until %s)",
        run.job,
        holder.run_id,
        holder.holder,
        _stamp(holder.expires),
        extra=extra,
    )


def _log_acquired(run: JobRun, attempt: Attempt) -> None:
    if attempt.waited:
        run.logger.info(
            "queued %.1fs behind an earlier run of %s",
            attempt.waited,
            run.job,
            extra={"status": "queued", "wait_s": round(attempt.waited, 3)},
        )
    stale = attempt.replaced
    if stale is not None:
        run.logger.warning(
            "took over the expired lease of run %s on %s (expired %s): it crashed or overran",
            stale.run_id,
            stale.holder,
            _stamp(stale.expires),
            extra={"status": "took_over"},
        )


def _release_logged(run: JobRun, lease: Lease, bucket: str) -> None:
    """Release after the run; a lease another run took over is logged, never deleted."""
    import requests

    try:
        released = release(lease, bucket=bucket)
    except requests.RequestException as exc:
        run.logger.warning("lease not released (it expires %s): %s", _stamp(lease.expires), exc)
        return
    if not released:
        run.logger.warning(
            "lease lost: this run outlived its lease (until %s); another run took it over",
            _stamp(lease.expires),
            extra={"status": "lease_lost"},
        )


def _required_bucket() -> str:
    bucket = lease_bucket()
    if bucket is None:
        raise LeaseError(f"{BUCKET_ENV} is not set")
    return bucket


def _write(bucket: str, job: str, run_id: str, ttl: float, expected: str) -> Lease | None:
    """Upload the lease if the object is at generation `expected` ("0": absent); None on 412."""
    body, meta = _documents(job, run_id, ttl)
    boundary = uuid.uuid4().hex
    payload = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{body}\r\n--{boundary}--\r\n"
    )
    answer = _send(
        "POST",
        f"{_base()}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
        {"uploadType": "multipart", "ifGenerationMatch": expected},
        data=payload.encode(),
        headers={"Content-Type": f"multipart/related; boundary={boundary}"},
    )
    if answer.status_code == 404:
        raise LeaseError(f"bucket {bucket} not found: create it, or set {BUCKET_ENV} to one")
    if answer.status_code == 412:
        return None
    return _lease(answer.json())


def _documents(job: str, run_id: str, ttl: float) -> tuple[str, str]:
    """The lease body and its object resource; the resource's metadata is what a read uses."""
    holder = _holder()
    acquired = datetime.now(UTC)  # informational; expiry is judged on GCS's clock
    body = {
        "job": job,
        "run_id": run_id,
        "holder": holder,
        "acquired": _stamp(acquired),
        "expires": _stamp(acquired + timedelta(seconds=ttl)),
        "ttl_seconds": ttl,
    }
    resource = {
        "name": object_name(job),
        "contentType": "application/json",
        "cacheControl": "no-store",
        "metadata": {"job": job, "run_id": run_id, "holder": holder, "ttl_seconds": str(ttl)},
    }
    return json.dumps(body), json.dumps(resource)


def _lease(resource: dict[str, Any]) -> Lease:
    meta = resource.get("metadata") or {}
    return Lease(
        job=meta.get("job", resource["name"].removeprefix(PREFIX).removesuffix(".json")),
        run_id=meta.get("run_id", ""),
        holder=meta.get("holder", ""),
        generation=str(resource["generation"]),
        written=_parse_stamp(resource["updated"]),
        ttl=float(meta.get("ttl_seconds", "0")),
    )


def _send(method: str, url: str, params: dict[str, str], **kwargs: Any) -> requests.Response:
    """One call under the service's retry policy; 404 and 412 are answers, not errors."""
    import requests

    from scripts.common.http import request

    headers = {"Authorization": f"Bearer {_access_token()}", **kwargs.pop("headers", {})}
    try:
        return request(
            method,
            url,
            params=params,
            headers=headers,
            policy=_policy(),
            session=_session(),
            **kwargs,
        )
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code in (404, 412):
            return exc.response
        raise


def _policy() -> RetryPolicy:
    """The service's retry policy, tightened: a lease call must not hold a run up for long."""
    from scripts.common.http import RetryPolicy

    return RetryPolicy(attempts=3, base_wait=0.2, max_wait=2.0, timeout=5.0)


def _session() -> requests.Session:
    """One keep-alive session per thread (gunicorn serves requests on threads)."""
    import requests

    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _access_token() -> str:
    """The instance's OAuth token from the metadata server, reused until a minute before expiry."""
    from scripts.common.http import request

    host = os.environ.get("GCE_METADATA_HOST", METADATA)
    with _token_lock:
        if _token.get("host") == host and _token.get("until", 0) > time.monotonic():
            return _token["value"]
        answer = request(
            "GET",
            f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token",
            headers={"Metadata-Flavor": "Google"},
            policy=_policy(),
            session=_session(),
        ).json()
        lifetime = max(0, int(answer.get("expires_in", 0)) - 60)
        _token.update(host=host, value=answer["access_token"], until=time.monotonic() + lifetime)
        return _token["value"]


def _base() -> str:
    """The GCS endpoint: STORAGE_EMULATOR_HOST (localcloud sets it) or Google's."""
    base = os.environ.get("STORAGE_EMULATOR_HOST") or API
    return (base if "://" in base else f"http://{base}").rstrip("/")


def _object_url(bucket: str, job: str) -> str:
    name = quote(object_name(job), safe="")
    return f"{_base()}/storage/v1/b/{quote(bucket, safe='')}/o/{name}"


def _holder() -> str:
    """Which instance runs: the revision, host and process (informational)."""
    revision = os.environ.get("K_REVISION", "local")
    return f"{revision}/{socket.gethostname()}/{os.getpid()}"


def _server_now(answer: requests.Response) -> datetime:
    """GCS's time of an answer: its Date header, refined within Date's 1 s by our own clock."""
    ours = datetime.now(UTC)
    date = answer.headers.get("Date")
    if not date:
        return ours
    try:
        server = parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return ours
    slack = timedelta(seconds=1) + answer.elapsed
    return min(max(ours, server), server + slack)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_stamp(text: str) -> datetime:
    """GCS's RFC 3339 time (Z, up to nanoseconds) as an aware datetime."""
    head, _, fraction = text.rstrip("Z").partition(".")
    digits = (fraction + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{digits}+00:00").astimezone(UTC)
