"""Cloud Run's limits as Google documents them: localcloud's own rules, never opslib's.

localcloud is a witness of opslib's mistakes, so it checks what Cloud Run checks from Google's
pages (gcp-facts.md §2), not from `opslib.spec`:
- CPU (cloud.google.com/run/docs/configuring/services/cpu): 0.08 up to below 1 (in steps of
  0.001), or a whole 1, 2, 4, 6 or 8. Below 1 CPU, memory above 512Mi needs 0.5 CPU, memory
  above 1Gi needs 1 CPU, and the maximum concurrency must be 1.
- Memory (…/memory-limits): a Kubernetes quantity, 128Mi to 32Gi; above 4Gi needs 2 CPUs,
  above 8Gi 4, above 16Gi 6, above 24Gi 8; 4 CPUs need 2Gi, 6 and 8 CPUs 4Gi.
- Env names PORT, K_SERVICE, K_REVISION, K_CONFIGURATION (services) and CLOUD_RUN_JOB,
  CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_ATTEMPT, CLOUD_RUN_TASK_COUNT
  (jobs) are set by Cloud Run and cannot be set.
- A `secretKeyRef.secret` is a secret id (1-255 letters, digits, `_`, `-`) or
  `projects/P/secrets/ID`.
- Jobs (…/configuring/task-timeout, max-retries, parallelism): 1-10,000 tasks; 0-10 retries,
  3 by default; a task timeout of 600s by default, at most 24 h, or 168 h in a preview launch
  stage. A service's request timeout is 1s-3600s, 300s by default.

Messages: Cloud Run words a memory outside the CPU's range as `Invalid value specified for
memory. For 1.0 CPU, memory must be between 128Mi and 4Gi inclusive.` (seen from Google in
googleapis/repo-automation-bots#3875); the other CPU and memory messages follow that form in
localcloud's words.
"""

from __future__ import annotations

import re
from decimal import Decimal

MI, GI = 1024**2, 1024**3
CPU_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {
    "": 1,
    "Ki": 1024,
    "Mi": MI,
    "Gi": GI,
    "Ti": 1024 * GI,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
WHOLE_CPUS = (1, 2, 4, 6, 8)
FRACTION_MIN = Decimal("0.08")
MEMORY_FLOOR, MEMORY_CEILING = 128 * MI, 32 * GI
# The most memory each CPU may have, and the least (from the two tables of the pages above).
MEMORY_MOST = ((Decimal("0.5"), 512 * MI), (Decimal(1), GI), (Decimal(2), 4 * GI))
MEMORY_MOST_WHOLE = {1: 4 * GI, 2: 8 * GI, 4: 16 * GI, 6: 24 * GI, 8: 32 * GI}
MEMORY_LEAST_WHOLE = {4: 2 * GI, 6: 4 * GI, 8: 4 * GI}

SERVICE_RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
JOB_RESERVED_ENV = (
    "CLOUD_RUN_JOB",
    "CLOUD_RUN_EXECUTION",
    "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_TASK_ATTEMPT",
    "CLOUD_RUN_TASK_COUNT",
)
SECRET_REFERENCE = re.compile(r"^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}$")

REQUEST_TIMEOUT_DEFAULT, REQUEST_TIMEOUT_MOST = 300, 3600
TASKS_MOST = 10_000
RETRIES_DEFAULT, RETRIES_MOST = 3, 10
TASK_TIMEOUT_DEFAULT = 600
TASK_TIMEOUT_GA, TASK_TIMEOUT_PREVIEW = 24 * 3600, 168 * 3600


class RuleError(ValueError):
    """A value Cloud Run refuses; the message is what the API says (without the field path)."""


def cpu(value: object) -> Decimal:
    """A CPU limit (`1`, `0.5`, `500m`) as a number of CPUs, if Cloud Run takes it."""
    text = str(value).strip()
    match = CPU_QUANTITY.match(text)  # a number of CPUs, or of millicpus with "m"
    number = Decimal(match.group(1)) / (1000 if match.group(2) else 1) if match else Decimal("NaN")
    fraction = number.is_finite() and FRACTION_MIN <= number < 1
    if fraction and number == number.quantize(Decimal("0.001")):
        return number
    if number.is_finite() and number == number.to_integral_value() and int(number) in WHOLE_CPUS:
        return number
    raise RuleError(
        f"Invalid value specified for cpu. {text!r} is not a CPU count Cloud Run offers: "
        "a value from 0.08 to below 1 in steps of 0.001, or one of 1, 2, 4, 6, 8."
    )


def memory(value: object) -> int:
    """A memory limit (a Kubernetes quantity such as `512Mi`, `2Gi`) in bytes."""
    text = str(value).strip()
    match = QUANTITY.match(text)
    if not match:
        raise RuleError(
            f"Invalid value specified for memory. {text!r} is not a quantity such as 512Mi or 2Gi."
        )
    return int(Decimal(match.group(1)) * UNITS[match.group(2) or ""])


def quantity(size: int) -> str:
    """Bytes as the shortest exact binary quantity (`4Gi`, `512Mi`)."""
    for unit in ("Gi", "Mi", "Ki"):
        if size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]}{unit}"
    return str(size)


def memory_range(cpus: Decimal) -> tuple[int, int]:
    """The least and the most memory Cloud Run allows with `cpus` CPUs."""
    if cpus < 1:
        most = next(limit for below, limit in MEMORY_MOST if cpus < below)
        return MEMORY_FLOOR, most
    whole = int(cpus)
    return MEMORY_LEAST_WHOLE.get(whole, MEMORY_FLOOR), MEMORY_MOST_WHOLE[whole]


def check_limits(cpus: Decimal, size: int, concurrency: int | None) -> None:
    """Cloud Run's CPU/memory pairing, and concurrency 1 below one CPU (None: not checked)."""
    least, most = memory_range(cpus)
    if not least <= size <= most:
        raise RuleError(
            f"Invalid value specified for memory. For {float(cpus)} CPU, memory must be "
            f"between {quantity(least)} and {quantity(most)} inclusive."
        )
    if cpus < 1 and concurrency is not None and concurrency > 1:
        raise RuleError(
            f"Invalid value specified for cpu. With {float(cpus)} CPU (less than 1), the "
            f"maximum concurrency must be 1, not {concurrency}."
        )


def check_env(names: list[str], reserved: tuple[str, ...]) -> None:
    """Env names Cloud Run sets itself cannot be given."""
    taken = [name for name in names if name in reserved]
    if taken:
        raise RuleError(
            f"The following reserved env names were provided: {', '.join(taken)}. These "
            "values are automatically set by the system."
        )


def check_secret_reference(name: str, secret: object) -> None:
    """A `secretKeyRef.secret`: a secret id, or `projects/P/secrets/ID`."""
    if not SECRET_REFERENCE.match(str(secret or "")):
        raise RuleError(f"Invalid secret reference for env {name}: {secret!r}.")
