"""The automation spec: one YAML per automation, checked against Google's rules up front.

Field rules live on the models (pydantic); rules that tie two sections together (attempt
deadline vs Cloud Run timeout, body vs pattern) run once every field is valid. Loading is in
`opslib.spec.loader`, which turns every broken rule into a message with file, line and fix.
The whole schema stays in this one module (a little over 400 lines) so it reads top to bottom
as the YAML does; the field types and their checks are in `opslib.spec.fields`.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from opslib.spec import cron, defaults
from opslib.spec import rules as g
from opslib.spec.alerts import Alerts
from opslib.spec.fields import (
    Cpu,
    Duration,
    EnvName,
    EnvValue,
    HeaderName,
    Memory,
    SecretRef,
    is_control,
    not_json,
    slug,
)
from opslib.spec.rules import RuleBroken

JOB_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Job(_Model):
    """What runs: the module under service/scripts/batch/ and its route."""

    name: str = Field(description="job id: route /run-NAME, module NAME with '_' for '-'")
    pattern: Literal["function", "class"] = "function"
    description: str = ""
    source_url: str | None = None
    expected_duration: Duration | None = None
    # Where it runs: a route on the Cloud Run service (Scheduler waits at most 30 min) or a
    # Cloud Run job (tasks of up to 24 h). None: `job` when expected_duration is over 30 min.
    runtime: Literal["service", "job"] | None = None
    task_timeout: Duration | None = None  # runtime job: per task; default covers the work
    max_retries: int = 3  # runtime job: retries of a failed task
    tasks: int = 1  # runtime job: tasks per execution (shards: CLOUD_RUN_TASK_INDEX/COUNT)
    parallelism: int = 0  # runtime job: tasks at once; 0 = as many as possible
    # A run that starts while the previous run of this job is still going: skip it (a 200
    # `skipped` answer), queue it (wait for the previous one), or allow both at once.
    overlap: Literal["allow", "skip", "queue"] = "skip"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.fullmatch(value):
            raise RuleBroken(
                "a job name is lowercase letters, digits and hyphens, starting with a letter, "
                "at most 63 characters (opslib derives the Scheduler job id, the route "
                "/run-NAME and the Python module NAME from it)",
                f"use a name like {slug(value)}",
            )
        if keyword.iskeyword(value.replace("-", "_")):
            raise RuleBroken(
                f"the module name {value!r} is a Python keyword", f"use a name like {value}-job"
            )
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        controls = sorted({f"U+{ord(c):04X}" for c in value if is_control(c)})
        if controls:
            raise RuleBroken(
                f"a description is plain text; it holds control characters ({', '.join(controls)})",
                "remove them (tabs and line breaks are fine)",
            )
        if len(value) > g.DESCRIPTION_MAX:
            raise RuleBroken(
                f"a Scheduler job description is at most {g.DESCRIPTION_MAX} characters "
                f"({len(value)} given)",
                "shorten the description",
            )
        return value

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/\"'\\]+[^\s\"'\\]*$", value):
            raise RuleBroken(
                "source_url is an http:// or https:// URL (percent-encode quotes and spaces)",
                "write it like https://api.example.com/v1/rates",
            )
        return value

    @field_validator("task_timeout")
    @classmethod
    def _task_timeout(cls, value: float | None) -> float | None:
        if value is not None and not 1 <= value <= g.TASK_TIMEOUT_MAX:
            raise RuleBroken(
                "a Cloud Run job task runs between 1s and 24h (task_timeout; over 24h is "
                "Preview only)",
                "use e.g. task_timeout: 2h, and split longer work into tasks (job.tasks)",
            )
        return value

    @field_validator("max_retries")
    @classmethod
    def _max_retries(cls, value: int) -> int:
        if not 0 <= value <= g.TASK_RETRIES_MAX:
            raise RuleBroken("a Cloud Run job retries a failed task 0 to 10 times", "use 0-10")
        return value

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: int) -> int:
        if not 1 <= value <= g.TASKS_MAX:
            raise RuleBroken("a Cloud Run job execution has 1 to 10,000 tasks", "use 1-10000")
        return value

    @field_validator("parallelism")
    @classmethod
    def _parallelism(cls, value: int) -> int:
        if value < 0:
            raise RuleBroken("parallelism is 0 (as many as possible) or more", "use 0 or N")
        return value

    @property
    def effective_runtime(self) -> str:
        """`job` when the work cannot fit one Scheduler attempt (over 30 min), unless set."""
        if self.runtime:
            return self.runtime
        long = (
            self.expected_duration is not None and self.expected_duration > g.ATTEMPT_DEADLINE_MAX
        )
        return "job" if long else "service"

    @property
    def effective_task_timeout(self) -> float:
        """The task timeout asked for, else one that covers the expected work with margin."""
        if self.task_timeout is not None:
            return self.task_timeout
        expected = self.expected_duration or 0
        return float(min(g.TASK_TIMEOUT_MAX, max(defaults.TASK_TIMEOUT, math.ceil(expected * 1.5))))

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def route(self) -> str:
        return f"/run-{self.name}"

    @property
    def view(self) -> str:
        return f"run_{self.module}"

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-"))


class Retry(_Model):
    """Cloud Scheduler's RetryConfig, with its defaults."""

    count: int = 0
    min_backoff: Duration = 5
    max_backoff: Duration = 3600
    max_doublings: int = 5
    max_retry_duration: Duration = 0

    @field_validator("count")
    @classmethod
    def _count(cls, value: int) -> int:
        if not 0 <= value <= g.RETRY_COUNT_MAX:
            raise RuleBroken(
                f"Scheduler retryCount is 0 to {g.RETRY_COUNT_MAX}", "use count between 0 and 5"
            )
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> Retry:
        if self.min_backoff > self.max_backoff:
            raise RuleBroken(
                "minBackoffDuration must not exceed maxBackoffDuration",
                f"lower min_backoff to at most {g.format_duration(self.max_backoff)}",
                key="min_backoff",
            )
        return self

    @field_validator("max_doublings")
    @classmethod
    def _doublings(cls, value: int) -> int:
        if value < 0:
            raise RuleBroken("maxDoublings cannot be negative", "use max_doublings: 5")
        return value


class Schedule(_Model):
    """The Cloud Scheduler HTTP job that calls the route."""

    cron: str
    time_zone: str = defaults.TIME_ZONE
    attempt_deadline: Duration = 180
    http_method: Literal["POST", "GET", "HEAD", "PUT", "DELETE", "PATCH"] = "POST"
    body: dict[str, Any] = Field(default_factory=dict)
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    service_account: str | None = None
    audience: str | None = None
    retry: Retry = Field(default_factory=Retry)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron.validate(value)
        return " ".join(value.split())

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        cron.validate_time_zone(value)
        return value

    @field_validator("attempt_deadline")
    @classmethod
    def _deadline(cls, value: float) -> float:
        if not g.ATTEMPT_DEADLINE_MIN <= value <= g.ATTEMPT_DEADLINE_MAX:
            raise RuleBroken(
                "a Scheduler HTTP attempt deadline is 15s to 30m (1800s)",
                "use attempt_deadline between 15s and 1800s; split longer work into jobs",
            )
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = not_json(value)
        if found is not None:
            where, kind = found
            raise RuleBroken(
                f"Scheduler sends the body as JSON; {where} is a {kind}, which JSON cannot hold",
                'quote it in the YAML (e.g. day: "2024-01-01"), or use a number or true/false',
                key=where.removeprefix("body."),
            )
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        size = sum(len(k) + len(v) + 4 for k, v in value.items())
        if size >= g.HEADERS_MAX_BYTES:
            raise RuleBroken("Scheduler headers total less than 80 KB", "send fewer headers")
        return value

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9-]+@[a-z0-9.-]+\.com", value):
            raise RuleBroken(
                "the OIDC service account is an e-mail address in the project",
                "write it like scheduler@PROJECT.iam.gserviceaccount.com",
            )
        return value

    @property
    def body_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


class Deploy(_Model):
    """The Cloud Run service's resources and environment."""

    memory: Memory = Field(default=defaults.MEMORY)
    cpu: Cpu = Field(default="1")
    timeout: Duration = 300
    min_instances: int = 0
    max_instances: int = 100
    concurrency: int | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 1 <= value <= g.RUN_TIMEOUT_MAX:
            raise RuleBroken(
                "a Cloud Run request timeout is 1s to 3600s",
                "use timeout up to 3600s; work that needs longer belongs in a Cloud Run job",
            )
        return value

    @field_validator("min_instances", "max_instances")
    @classmethod
    def _instances(cls, value: int, info: ValidationInfo) -> int:
        low = 0 if info.field_name == "min_instances" else 1
        if not low <= value <= 1000:
            raise RuleBroken(f"Cloud Run {info.field_name} is {low} to 1000", f"use {low} to 1000")
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 1000:
            raise RuleBroken("Cloud Run concurrency is 1 to 1000", "use concurrency: 80")
        return value

    @model_validator(mode="after")
    def _combination(self) -> Deploy:
        try:
            g.check_cpu_memory(self.cpu, self.memory, self.concurrency)
        except RuleBroken as exc:
            exc.key = "concurrency" if "concurrency" in exc.rule else "memory"
            raise
        if self.min_instances > self.max_instances:
            raise RuleBroken(
                f"min instances cannot exceed max instances ({self.max_instances})",
                f"lower min_instances or raise max_instances to {self.min_instances}",
                key="min_instances",
            )
        return self

    @property
    def memory_text(self) -> str:
        return g.format_memory(self.memory)

    @property
    def effective_concurrency(self) -> int:
        return self.concurrency or defaults.concurrency(float(self.cpu))


class Spec(_Model):
    """One automation: where it runs, what it runs, when, and with which secrets."""

    target: Literal["local", "gcp"] = "local"
    project: str
    region: str
    service: str
    # The source folder of `service`, relative to the project root. Every automation naming
    # the service shares it (steps 1-2 accumulate their jobs there; step 3 ships it whole).
    service_dir: str = "service"
    job: Job
    schedule: Schedule
    deploy: Deploy = Field(default_factory=Deploy)
    secrets: dict[EnvName, SecretRef] = Field(default_factory=dict)
    alerts: Alerts | None = None  # who hears about failures (opslib.spec.alerts)

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not g.PROJECT_ID.fullmatch(value):
            raise RuleBroken(
                "a project id is 6-30 lowercase letters, digits or hyphens, starting with a "
                "letter and not ending with a hyphen",
                "use your project's id (not its name or number), e.g. my-project-123",
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in g.REGIONS:
            raise RuleBroken(
                f"region must be a Cloud Run region{g.suggest(value, g.REGIONS)}",
                "use e.g. asia-northeast3 (Seoul), asia-northeast1 (Tokyo), us-central1",
            )
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if not g.SERVICE_ID.fullmatch(value):
            raise RuleBroken(g.SERVICE_ID_RULE, f"use a name like {slug(value)[:49]}")
        return value

    @field_validator("service_dir")
    @classmethod
    def _service_dir(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not value or value.startswith(("/", "~")) or ".." in parts or "\\" in value:
            raise RuleBroken(
                "service_dir is a folder inside the project, relative to its root "
                "(no absolute path, no '..')",
                "use e.g. service (the default) or services/report-service",
            )
        return PurePosixPath(value).as_posix()

    @property
    def service_key(self) -> tuple[str, str, str]:
        """The Cloud Run service this automation runs on: one folder, one deploy."""
        return (self.project, self.region, self.service)

    @property
    def invoker_account(self) -> str:
        return self.schedule.service_account or f"{self.project}@appspot.gserviceaccount.com"
