"""Check JSON answers against Google's discovery documents, field by field.

google-api-python-client ships the discovery documents of Google's APIs
(`googleapiclient/discovery_cache/documents/<api>.<version>.json`); each method names its
response schema, and each schema lists its fields with their JSON types and formats. `check`
walks an answer against the schema a method returns and reports every place it breaks a rule:

- a field the schema does not have (`additionalProperties` maps such as labels take any key);
- a JSON type that is not the schema's: objects, arrays, strings, booleans; `integer` fields
  (int32, uint32) are JSON numbers; `string` fields of format int64/uint64 are decimal strings;
- an enum value the schema does not list;
- a `google-datetime`/`date-time` that is not RFC 3339, a `date` that is not YYYY-MM-DD, a
  `google-duration` that is not like "3.5s", a `byte` field that is not base64;
- an `Any` (an object whose schema says it carries `@type`) whose `@type` names no schema of
  the document; one that does is checked against that schema.

Each problem names the resource, the JSON path and the rule, e.g.
`run.projects.locations.services.get: $.template.containers[0].colour: unknown field (not in
GoogleCloudRunV2Container)`. Nothing is relaxed: a field Google's document is known to lag
behind the API must be listed in `KNOWN_LAGS` with its source.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
# (document, schema id, field) that Google's discovery document lacks although the API has it,
# each with its source. Empty: every answer localcloud gives fits the documents as they are.
KNOWN_LAGS: dict[tuple[str, str, str], str] = {}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
DECIMAL = re.compile(r"^-?\d+$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}
ANY_NOTE = "@type"


@dataclass
class Report:
    """What one check found: the problems, and how many values it looked at."""

    problems: list[str] = field(default_factory=list)
    values: int = 0

    def add(self, other: Report) -> None:
        self.problems += other.problems
        self.values += other.values


@cache
def document(name: str) -> dict[str, Any]:
    """A discovery document by file name, e.g. `run.v2`."""
    return json.loads((DOCUMENTS / f"{name}.json").read_text())


def methods(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every method of a document by id (`run.projects.locations.services.get`)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                found[method["id"]] = method
            walk(resource.get("resources", {}))

    walk(doc.get("resources", {}))
    return found


def response_schema(doc_name: str, method_id: str) -> str:
    """The schema id a method answers with."""
    method = methods(document(doc_name))[method_id]
    return method["response"]["$ref"]


def check(doc_name: str, method_id: str, answer: Any) -> Report:
    """Check one answer against the response schema of `method_id` in `doc_name`."""
    walker = _Walker(doc_name, method_id)
    walker.value(answer, {"$ref": response_schema(doc_name, method_id)}, "$")
    return walker.report


class _Walker:
    def __init__(self, doc_name: str, resource: str) -> None:
        self.doc_name, self.resource = doc_name, resource
        self.schemas: dict[str, Any] = document(doc_name)["schemas"]
        self.report = Report()

    def fail(self, path: str, rule: str) -> None:
        self.report.problems.append(f"{self.resource}: {path}: {rule}")

    def value(self, value: Any, schema: dict[str, Any], path: str) -> None:
        """Dispatch on the schema's type ($ref resolved first)."""
        self.report.values += 1
        name = None
        if "$ref" in schema:
            name = schema["$ref"]
            schema = self.schemas[name]
        kind = schema.get("type", "any")
        if kind == "object":
            self.object(value, schema, path, name or schema.get("id", "object"))
        elif kind == "array":
            self.array(value, schema, path)
        elif kind in ("string", "integer", "number", "boolean"):
            self.scalar(value, schema, path, kind)
        elif kind != "any":
            self.fail(path, f"schema type {kind!r} is not understood by this checker")

    def object(self, value: Any, schema: dict[str, Any], path: str, name: str) -> None:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object ({name}), got {_kind(value)}")
            return
        extra = schema.get("additionalProperties")
        if extra is not None and extra.get("type") == "any" and ANY_NOTE in str(extra):
            self.any_message(value, path)
            return
        properties = schema.get("properties", {})
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in properties:
                self.value(item, properties[key], where)
            elif extra is not None:
                self.value(item, extra, where)
            elif (self.doc_name, name, key) not in KNOWN_LAGS:
                self.fail(where, f"unknown field (not in {name})")

    def any_message(self, value: dict[str, Any], path: str) -> None:
        """A google.protobuf.Any: checked against the schema its `@type` names."""
        type_url = value.get("@type")
        if type_url is None:
            if value:
                self.fail(path, "an Any with fields but no @type")
            return
        schema_id = self.schema_for(str(type_url))
        if schema_id is None:
            self.fail(f"{path}.@type", f"{type_url!r} names no schema of {self.doc_name}")
            return
        rest = {k: v for k, v in value.items() if k != "@type"}
        self.value(rest, {"$ref": schema_id}, path)

    def schema_for(self, type_url: str) -> str | None:
        """`type.googleapis.com/google.cloud.run.v2.Service` -> `GoogleCloudRunV2Service`."""
        *package, message = type_url.rsplit("/", 1)[-1].split(".")
        prefixed = "".join(part[:1].upper() + part[1:] for part in package) + message
        return next((s for s in (prefixed, message) if s in self.schemas), None)

    def array(self, value: Any, schema: dict[str, Any], path: str) -> None:
        if not isinstance(value, list):
            self.fail(path, f"expected an array, got {_kind(value)}")
            return
        for index, item in enumerate(value):
            self.value(item, schema.get("items", {}), f"{path}[{index}]")

    def scalar(self, value: Any, schema: dict[str, Any], path: str, kind: str) -> None:
        rule = _scalar_rule(value, kind, schema.get("format"))
        if rule is None and "enum" in schema and value not in schema["enum"]:
            rule = f"{value!r} is not one of the enum values {schema['enum']}"
        if rule:
            self.fail(path, rule)


def _scalar_rule(value: Any, kind: str, fmt: str | None) -> str | None:
    """What is wrong with a scalar of JSON type `kind` and format `fmt`, or None."""
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected a boolean, got {_kind(value)}"
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"expected an integer ({fmt or 'integer'}) as a JSON number, got {_kind(value)}"
        low, high = INT_RANGES.get(fmt or "", (None, None))
        if low is not None and not low <= value <= high:
            return f"{value} is out of the {fmt} range"
        return None
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"expected a number ({fmt or 'number'}), got {_kind(value)}"
    if not isinstance(value, str):
        what = f" ({fmt} is sent as a string)" if fmt else ""
        return f"expected a string{what}, got {_kind(value)}"
    return _format_rule(value, fmt)


def _format_rule(value: str, fmt: str | None) -> str | None:
    if fmt in ("int64", "uint64") and not DECIMAL.match(value):
        return f"{value!r} is not a decimal {fmt}"
    if fmt == "uint64" and value.startswith("-"):
        return f"{value!r} is negative, but the format is uint64"
    if fmt in ("google-datetime", "date-time") and not _is_rfc3339(value):
        return f"{value!r} is not an RFC 3339 time ({fmt})"
    if fmt == "date" and not _is_date(value):
        return f"{value!r} is not a date YYYY-MM-DD"
    if fmt == "google-duration" and not DURATION.match(value):
        return f"{value!r} is not a google-duration such as '3.5s'"
    if fmt == "byte" and not _is_base64(value):
        return f"{value!r} is not base64 (byte)"
    return None


def _is_rfc3339(text: str) -> bool:
    if not RFC3339.match(text):
        return False
    head = text[:19]
    try:
        datetime.fromisoformat(head)
    except ValueError:
        return False
    return True


def _is_date(text: str) -> bool:
    try:
        return date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _is_base64(text: str) -> bool:
    """Standard or URL-safe base64, padded, as protobuf's JSON mapping reads it."""
    if len(text) % 4:
        return False
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return f"{names.get(type(value), type(value).__name__)} {value!r}"[:80]
