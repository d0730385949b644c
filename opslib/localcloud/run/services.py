"""Cloud Run v2 resources: validation with Google's rules, defaults, revisions and traffic.

No I/O here: services_api and backend turn requests into calls on these functions,
instances runs what they describe.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import string
from collections.abc import Iterator
from typing import Any

from opslib.localcloud import schema
from opslib.localcloud.clock import duration_seconds, duration_text
from opslib.localcloud.errors import ApiError, invalid
from opslib.localcloud.run import rules

SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
INGRESS = {
    0: "INGRESS_TRAFFIC_ALL",
    1: "INGRESS_TRAFFIC_ALL",
    2: "INGRESS_TRAFFIC_INTERNAL_ONLY",
    3: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    4: "INGRESS_TRAFFIC_NONE",
}
TRAFFIC_TYPES = {
    0: "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED",
    1: "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST",
    2: "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
}
LATEST, BY_REVISION = TRAFFIC_TYPES[1], TRAFFIC_TYPES[2]
# Output-only fields every Run v2 resource a client sends back has (a Service, a Job).
RESOURCE_OUTPUT_ONLY = {
    "uid",
    "generation",
    "createTime",
    "updateTime",
    "deleteTime",
    "expireTime",
    "creator",
    "lastModifier",
    "observedGeneration",
    "terminalCondition",
    "conditions",
    "reconciling",
    "satisfiesPzs",
}
OUTPUT_ONLY = RESOURCE_OUTPUT_ONLY | {
    "uri",
    "urls",
    "latestReadyRevision",
    "latestCreatedRevision",
    "trafficStatuses",
    "etag",
}
DEFAULT_LIMITS = {"cpu": "1000m", "memory": "512Mi"}  # Cloud Run's defaults: 1 CPU, 512Mi
RESERVED_ANNOTATION = re.compile(
    r"^(run|cloud|serving\.knative|autoscaling\.knative)\.(googleapis\.com|dev)/"
)


_A, _S = "any", "scalar"
CONTAINER_SCHEMA = {
    k: _A
    for k in (
        "name",
        "image",
        "sourceCode",
        "command",
        "args",
        "env",
        "resources",
        "ports",
        "volumeMounts",
        "workingDir",
        "livenessProbe",
        "startupProbe",
        "readinessProbe",
        "dependsOn",
        "baseImageUri",
        "buildInfo",
    )
}
TEMPLATE_SCHEMA: dict[str, Any] = {
    k: _A
    for k in (
        "revision",
        "labels",
        "annotations",
        "scaling",
        "vpcAccess",
        "timeout",
        "serviceAccount",
        "volumes",
        "executionEnvironment",
        "encryptionKey",
        "maxInstanceRequestConcurrency",
        "serviceMesh",
        "encryptionKeyRevocationAction",
        "encryptionKeyShutdownDuration",
        "sessionAffinity",
        "healthCheckDisabled",
        "nodeSelector",
        "gpuZonalRedundancyDisabled",
    )
}
TEMPLATE_SCHEMA["containers"] = [CONTAINER_SCHEMA]
SERVICE_SCHEMA: dict[str, Any] = {
    k: _A
    for k in (
        *OUTPUT_ONLY,
        "name",
        "description",
        "labels",
        "annotations",
        "client",
        "clientVersion",
        "ingress",
        "launchStage",
        "binaryAuthorization",
        "scaling",
        "invokerIamDisabled",
        "defaultUriDisabled",
        "iapEnabled",
        "multiRegionSettings",
        "customAudiences",
        "buildConfig",
        "threatDetectionEnabled",
    )
}
SERVICE_SCHEMA["template"] = TEMPLATE_SCHEMA
SERVICE_SCHEMA["traffic"] = [{k: _S for k in ("type", "revision", "percent", "tag")}]


def check_service_id(service_id: str) -> None:
    if not SERVICE_ID.match(service_id or ""):
        raise invalid(
            "Violation in CreateServiceRequest.service_id: only lowercase, digits, and hyphens; "
            "must begin with letter, and cannot end with hyphen; must be less than 50 characters.",
            "service_id",
        )


def normalize(service: dict[str, Any]) -> dict[str, Any]:
    """The service input with output-only fields dropped, enums named and defaults filled."""
    service = schema.check(service, SERVICE_SCHEMA, "service")
    spec = {k: v for k, v in service.items() if k not in OUTPUT_ONLY and not k.startswith("_")}
    check_annotations(spec.get("annotations"), "service.annotations")
    spec["ingress"] = schema.enum_name(
        spec.get("ingress", "INGRESS_TRAFFIC_ALL"), INGRESS, "service.ingress"
    )
    spec.setdefault("launchStage", "GA")
    if isinstance(spec.get("launchStage"), int):
        spec["launchStage"] = "GA"
    template = spec.get("template")
    if not isinstance(template, dict):
        raise invalid("service.template is required.", "service.template")
    spec["template"] = _template(template)
    spec["traffic"] = _traffic(spec.get("traffic") or [])
    return spec


def check_annotations(annotations: Any, field: str) -> None:
    """Cloud Run's own annotation prefixes (run.googleapis.com/, ...) are not the user's."""
    for key in annotations or {}:
        if RESERVED_ANNOTATION.match(key):
            raise invalid(f"Annotation {key} is reserved and cannot be set.", field)


@contextlib.contextmanager
def rule_checked(where: str, field: str) -> Iterator[None]:
    """A Cloud Run rule broken inside the block is Google's 400: `{where}: {message}`."""
    try:
        yield
    except rules.RuleError as exc:
        raise invalid(f"{where}: {exc}", field) from None


def only_container(containers: list[dict[str, Any]], field: str, per: str) -> dict[str, Any]:
    """The one container localcloud runs: one is required, sidecars are not emulated."""
    if not containers:
        raise invalid(f"{field}: at least one container is required.", field)
    if len(containers) > 1:
        raise ApiError("UNIMPLEMENTED", f"localcloud runs one container per {per} (no sidecars).")
    return containers[0]


def _template(template: dict[str, Any]) -> dict[str, Any]:
    first = only_container(
        template.get("containers") or [], "service.template.containers", "revision"
    )
    out = dict(template)
    timeout = duration_seconds(template.get("timeout"), rules.REQUEST_TIMEOUT_DEFAULT)
    if not 1 <= timeout <= rules.REQUEST_TIMEOUT_MOST:
        raise invalid(
            "service.template.timeout must be between 1s and 3600s.", "service.template.timeout"
        )
    out["timeout"] = duration_text(timeout)
    container = _container(first)
    out["containers"] = [container]
    limits = container["resources"]["limits"]
    cpu = rules.cpu(limits["cpu"])
    concurrency = int(template.get("maxInstanceRequestConcurrency") or (80 if cpu >= 1 else 1))
    where = "service.template.containers"
    with rule_checked(f"{where}[0].resources.limits", f"{where}.resources"):
        rules.check_limits(cpu, rules.memory(limits["memory"]), concurrency)
    out["maxInstanceRequestConcurrency"] = concurrency
    scaling = dict(template.get("scaling") or {})
    scaling.setdefault("maxInstanceCount", 100)
    if int(scaling.get("minInstanceCount", 0)) > int(scaling["maxInstanceCount"]):
        raise invalid(
            "min_instance_count must not exceed max_instance_count.", "service.template.scaling"
        )
    out["scaling"] = scaling
    return out


def _container(container: dict[str, Any]) -> dict[str, Any]:
    out = dict(container)
    if not out.get("image"):
        raise invalid(
            "service.template.containers[0].image is required.", "service.template.containers.image"
        )
    check_env(out.get("env", []), rules.SERVICE_RESERVED_ENV, "service.template.containers")
    resources = dict(out.get("resources") or {})
    limits = {**DEFAULT_LIMITS, **(resources.get("limits") or {})}
    where = "service.template.containers"
    with rule_checked(f"{where}[0].resources.limits", f"{where}.resources"):
        rules.cpu(limits["cpu"])
        rules.memory(limits["memory"])
    resources["limits"] = limits
    resources.setdefault("cpuIdle", True)
    resources.setdefault("startupCpuBoost", False)
    out["resources"] = resources
    out.setdefault("ports", [{"name": "http1", "containerPort": 8080}])
    return out


def check_env(env: list[dict[str, Any]], reserved: tuple[str, ...], where: str) -> None:
    """A container's env: no name Cloud Run sets itself, secret references well formed."""
    with rule_checked(where, f"{where}.env"):
        rules.check_env([str(var.get("name")) for var in env], reserved)
        for var in env:
            ref = (var.get("valueSource") or {}).get("secretKeyRef")
            if ref is not None:
                rules.check_secret_reference(str(var.get("name")), ref.get("secret"))


def _traffic(traffic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not traffic:
        return [{"type": LATEST, "percent": 100}]
    out = []
    for target in traffic:
        entry = {k: v for k, v in target.items() if v not in (None, "", 0) or k == "percent"}
        entry["type"] = schema.enum_name(
            target.get("type", 0), TRAFFIC_TYPES, "service.traffic.type"
        )
        if entry["type"] == TRAFFIC_TYPES[0]:
            entry["type"] = BY_REVISION if target.get("revision") else LATEST
        entry["percent"] = int(target.get("percent", 0))
        out.append(entry)
    if sum(t["percent"] for t in out) != 100:
        raise invalid("Traffic percentages must add up to 100.", "service.traffic")
    return out


def template_key(template: dict[str, Any]) -> str:
    """What makes two templates the same revision (a change in any of it makes a new one)."""
    return json.dumps({k: v for k, v in template.items() if k != "revision"}, sort_keys=True)


def revision_name(service_id: str, generation: int) -> str:
    """Cloud Run's revision naming: SERVICE-NNNNN-xyz."""
    return f"{service_id}-{generation:05d}-{''.join(random.choices(string.ascii_lowercase, k=3))}"


def pick(service: dict[str, Any]) -> str | None:
    """The full name of the revision that serves one request, by the traffic split."""
    latest = service.get("latestReadyRevision")
    roll, total = random.uniform(0, 100), 0.0
    for target in service.get("traffic", []):
        total += target["percent"]
        if roll <= total and target["percent"]:
            if target["type"] == LATEST:
                return latest
            return f"{service['name']}/revisions/{target.get('revision')}"
    return latest
