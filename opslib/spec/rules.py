"""Google Cloud's own limits, written down once (sources: ../shared/gcp-facts.md).

Each check raises `RuleBroken(rule, fix)`; the spec turns that into a message naming the file,
the key, the value, the rule and the fix. localcloud validates with rules of its own, written
from the same documents, so that a mistake here shows up against it.
"""

from __future__ import annotations

import difflib
import math
import re
from decimal import Decimal, InvalidOperation

PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SECRET_VERSION = re.compile(r"^(latest|[1-9][0-9]*|[a-zA-Z][a-zA-Z0-9_-]{0,62})$")
# Kubernetes' C_IDENTIFIER-like rule that Cloud Run applies to env var names.
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")

SERVICE_ID_RULE = (
    "Cloud Run service id: only lowercase letters, digits and hyphens; must begin with a "
    "letter, cannot end with a hyphen; must be less than 50 characters"
)

# Cloud Run locations (cloud.google.com/run/docs/locations); Cloud Scheduler serves the same.
REGIONS = frozenset(
    """
    africa-south1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3
    asia-south1 asia-south2 asia-southeast1 asia-southeast2 australia-southeast1
    australia-southeast2 europe-central2 europe-north1 europe-north2 europe-southwest1
    europe-west1 europe-west2 europe-west3 europe-west4 europe-west6 europe-west8 europe-west9
    europe-west10 europe-west12 me-central1 me-central2 me-west1 northamerica-northeast1
    northamerica-northeast2 northamerica-south1 southamerica-east1 southamerica-west1
    us-central1 us-east1 us-east4 us-east5 us-south1 us-west1 us-west2 us-west3 us-west4
    """.split()
)

BODY_METHODS = ("POST", "PUT", "PATCH")
ATTEMPT_DEADLINE_MIN, ATTEMPT_DEADLINE_MAX = 15, 1800
RUN_TIMEOUT_MAX = 3600
# Cloud Run jobs (cloud.google.com/run/docs/configuring/task-timeout, max-retries, parallelism):
# a task runs at most 24 h (GA; up to 168 h in Preview), default 10 min; 0-10 retries per task,
# default 3; 1-10,000 tasks per execution; parallelism 0 (as many as possible) up to the tasks.
TASK_TIMEOUT_MAX = 24 * 3600  # the default (10 min) is spec/defaults.py's TASK_TIMEOUT
TASK_RETRIES_MAX = 10
TASKS_MAX = 10_000
RETRY_COUNT_MAX = 5
HEADERS_MAX_BYTES = 80 * 1024
JOB_MAX_BYTES = 1024 * 1024
DESCRIPTION_MAX = 500

GIB = 1024**3
MIB = 1024**2
_MEMORY_UNITS = {"Ki": 1024, "Mi": MIB, "Gi": GIB, "k": 10**3, "M": 10**6, "G": 10**9}
MEMORY_MIN, MEMORY_MAX = 128 * MIB, 32 * GIB
CPU_INTEGERS = (1, 2, 4, 6, 8)
# (memory above, minimum CPU) and (CPU, minimum memory), from the Cloud Run CPU/memory pages.
MIN_CPU_FOR_MEMORY = ((24 * GIB, 8), (16 * GIB, 6), (8 * GIB, 4), (4 * GIB, 2))
MIN_MEMORY_FOR_CPU = {4: 2 * GIB, 6: 4 * GIB, 8: 4 * GIB}

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


class RuleBroken(ValueError):
    """A value breaks one of Google's rules (or one of opslib's, said so in `rule`)."""

    def __init__(self, rule: str, fix: str, key: str | None = None) -> None:
        self.rule, self.fix, self.key = rule, fix, key
        super().__init__(rule)


def suggest(value: str, choices: object) -> str:
    """A 'did you mean' hint for a near-miss, or an empty string."""
    close = difflib.get_close_matches(value, sorted(choices), n=1)  # type: ignore[arg-type]
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_duration(value: object, *, key: str) -> float:
    """Seconds from `900s`, `15m`, `1h` or a bare number of seconds."""
    if isinstance(value, bool):
        raise RuleBroken("a duration", f"write it with a unit, e.g. {key}: 900s")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise RuleBroken("a duration is a finite number", f"write it like {key}: 900s")
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if not match:
            raise RuleBroken(
                "a duration is a number with a unit: s, m or h",
                f"write it like {key}: 900s (or 15m)",
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise RuleBroken("a duration cannot be negative", f"give a positive value for {key}")
    return seconds


def format_duration(seconds: float) -> str:
    """Google's JSON form of a Duration: `900s`, `0.5s`."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def parse_memory(value: object) -> int:
    """Bytes from a Kubernetes quantity such as `512Mi` or `2Gi`."""
    text = str(value).strip()
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|M|G)", text)
    if not match:
        raise RuleBroken(
            "Cloud Run memory is a quantity with a unit: Mi or Gi (also M, G)",
            "write it like memory: 512Mi or memory: 2Gi",
        )
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def format_memory(size: int) -> str:
    """The shortest exact Kubernetes quantity for a size in bytes."""
    for unit in ("Gi", "Mi", "Ki"):
        if size % _MEMORY_UNITS[unit] == 0:
            return f"{size // _MEMORY_UNITS[unit]}{unit}"
    return str(size)


def parse_cpu(value: object) -> Decimal:
    """CPUs from `2`, `0.5` or `500m`."""
    text = str(value).strip()
    try:
        cpu = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        cpu = Decimal("NaN")
    if isinstance(value, bool) or not text.isascii() or not cpu.is_finite():
        raise RuleBroken(
            "Cloud Run CPU is a number of vCPUs (1, 2, 4, 6, 8) or a fraction 0.08-1",
            "write it like cpu: 1 or cpu: 0.5 or cpu: 500m",
        )
    if cpu < 1:
        if cpu < Decimal("0.08"):
            raise RuleBroken("Cloud Run CPU is at least 0.08 vCPU", "use cpu: 0.08 or more")
        return cpu
    if cpu != cpu.to_integral_value() or int(cpu) not in CPU_INTEGERS:
        raise RuleBroken(
            "Cloud Run CPU above 1 must be one of 1, 2, 4, 6, 8 vCPUs",
            f"use cpu: {_nearest_cpu(cpu)}",
        )
    return cpu


def _nearest_cpu(cpu: Decimal) -> int:
    return next((c for c in CPU_INTEGERS if c >= cpu), CPU_INTEGERS[-1])


def check_cpu_memory(cpu: Decimal, memory: int, concurrency: int | None) -> None:
    """Cloud Run's CPU/memory pairing rules."""
    mem = format_memory(memory)
    if not MEMORY_MIN <= memory <= MEMORY_MAX:
        raise RuleBroken("Cloud Run memory is 128Mi to 32Gi", "use memory between 128Mi and 32Gi")
    for above, min_cpu in MIN_CPU_FOR_MEMORY:
        if memory > above and cpu < min_cpu:
            raise RuleBroken(
                f"memory above {format_memory(above)} needs at least {min_cpu} CPUs "
                f"({mem} with cpu {cpu})",
                f"raise cpu to {min_cpu}, or lower memory to {format_memory(above)}",
            )
    min_mem = MIN_MEMORY_FOR_CPU.get(int(cpu)) if cpu >= 1 else None
    if min_mem and memory < min_mem:
        raise RuleBroken(
            f"{cpu} CPUs need at least {format_memory(min_mem)} memory ({mem} given)",
            f"raise memory to {format_memory(min_mem)}, or lower cpu",
        )
    if cpu < 1:
        if memory > GIB:
            raise RuleBroken(
                f"memory above 1Gi needs at least 1 CPU ({mem} with cpu {cpu})",
                "raise cpu to 1, or lower memory to 1Gi",
            )
        if memory > 512 * MIB and cpu < Decimal("0.5"):
            raise RuleBroken(
                f"memory above 512Mi needs at least 0.5 CPU ({mem} with cpu {cpu})",
                "raise cpu to 0.5, or lower memory to 512Mi",
            )
        if concurrency not in (None, 1):
            raise RuleBroken(
                f"with less than 1 CPU, concurrency must be 1 ({concurrency} given)",
                "set concurrency: 1, or raise cpu to 1",
            )


def check_env_name(name: str) -> None:
    """Cloud Run's rules for an environment variable name."""
    if name in RESERVED_ENV:
        raise RuleBroken(
            f"Cloud Run reserves {', '.join(RESERVED_ENV)}; they cannot be set",
            f"rename {name} (e.g. APP_{name})",
        )
    if not ENV_NAME.fullmatch(name):
        raise RuleBroken(
            "an env var name is letters, digits, '_', '-' or '.', not starting with a digit",
            f"rename {name!r}, e.g. {re.sub(r'[^A-Za-z0-9_]', '_', name).lstrip('0123456789')}",
        )


def check_secret_ref(ref: str) -> tuple[str, str]:
    """Split and check `NAME:VERSION` (or `projects/P/secrets/NAME:VERSION`).

    Messages never repeat the reference: a secret value pasted here by mistake stays unprinted.
    """
    name, sep, version = str(ref).rpartition(":")
    if not sep:
        raise RuleBroken(
            "a secret reference is NAME:VERSION, as in gcloud run deploy --set-secrets",
            "write the Secret Manager secret's name and version, e.g. api-key:latest "
            "(or pin a version: api-key:1)",
        )
    secret_id = name.split("/")[-1]
    full = re.fullmatch(r"projects/[^/]+/secrets/[^/]+", name)
    if ("/" in name and not full) or not SECRET_ID.fullmatch(secret_id):
        raise RuleBroken(
            "a secret id is 1-255 letters, digits, '_' or '-' (or projects/P/secrets/ID)",
            "use the secret's id, e.g. api-key:latest",
        )
    if not SECRET_VERSION.fullmatch(version):
        raise RuleBroken(
            "a secret version is 'latest', a version number, or an alias",
            "end the reference with :latest or a version number, e.g. api-key:latest",
        )
    return name, version


def service_account_project(account: str) -> str | None:
    """The project id an account's address names; None for the default compute account.

    `NAME@PROJECT.iam.gserviceaccount.com` and `PROJECT@appspot.gserviceaccount.com` name it;
    `NUMBER-compute@developer.gserviceaccount.com` carries the project number instead. Any other
    address belongs to no project ("").
    """
    local, _, domain = account.partition("@")
    if domain == "appspot.gserviceaccount.com":
        return local
    if domain.endswith(".iam.gserviceaccount.com"):
        return domain.removesuffix(".iam.gserviceaccount.com")
    if domain == "developer.gserviceaccount.com" and local.endswith("-compute"):
        return None
    return ""
