"""Step 1 — write the batch function: render the job module and its unit test from templates.

Pattern `function` is the seed's pattern B (sync `NAME(dry_run=False)`); pattern `class` is
pattern A (a class with async `run(**kwargs)`). Re-running with the same spec changes nothing;
a file that exists with other content is a conflict unless `force` is given.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jinja2

from opslib.core.errors import BadInput
from opslib.core.fsutil import atomic_write
from opslib.core.plan import Change, Plan
from opslib.spec.model import Spec

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("opslib.steps", "templates"),
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["pystr"] = lambda value: json.dumps(str(value), ensure_ascii=False)


def render(template: str, **context: object) -> str:
    """Render one of opslib's templates with no blank-line runs left by skipped blocks."""
    text = _ENV.get_template(template).render(**context)
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text


@dataclass(frozen=True)
class GeneratedFile:
    """A file step 1 owns, with the text it should have."""

    path: Path
    text: str


def module_path(spec: Spec, service_dir: Path) -> Path:
    """Where the job's module lives in a service folder (what users open to fill in)."""
    return Path(service_dir) / "scripts" / "batch" / f"{spec.job.module}.py"


def job_files(spec: Spec, service_dir: Path) -> list[GeneratedFile]:
    """The job module and its test, rendered for `spec`; each must compile before it is written."""
    job = spec.job
    docstring = textwrap.fill(
        (job.description or f"The {job.name} batch job").replace("\\", "/").replace('"', "'"),
        width=96,
    )
    context = {
        "job": job,
        "docstring": docstring,
        "env_prefix": job.module.upper(),
        "runtime": job.effective_runtime,
    }
    template = "job_class.py.j2" if job.pattern == "class" else "job_function.py.j2"
    files = [
        GeneratedFile(module_path(spec, service_dir), render(template, **context)),
        GeneratedFile(
            service_dir / "tests" / f"test_{job.module}.py", render("job_test.py.j2", **context)
        ),
    ]
    for generated in files:
        _require_compiles(generated)
    return files


def _require_compiles(generated: GeneratedFile) -> None:
    try:
        compile(generated.text, str(generated.path), "exec")
    except (SyntaxError, ValueError) as exc:
        raise BadInput(
            str(generated.path),
            f"the rendered code does not compile ({exc}); nothing was written",
            "remove unusual characters from job.description and job.source_url",
        ) from None


def plan(
    spec: Spec, service_dir: Path, *, force: bool = False, keep_edited: bool = False
) -> tuple[Plan, list[GeneratedFile]]:
    """What step 1 would write; a file that differs is a conflict unless forced or kept."""
    _require_service(service_dir)
    result, to_write = Plan(), []
    for generated in job_files(spec, service_dir):
        change = _change_for(spec, service_dir, generated, force=force, keep_edited=keep_edited)
        result.add(change)
        if change.action != "no change":
            to_write.append(generated)
    return result, to_write


def _change_for(
    spec: Spec, service_dir: Path, generated: GeneratedFile, *, force: bool, keep_edited: bool
) -> Change:
    relative = str(generated.path.relative_to(service_dir))
    if not generated.path.exists():
        return Change("scaffold", relative, "create", detail=f"{spec.job.pattern} pattern")
    if generated.path.read_text(encoding="utf-8") == generated.text:
        return Change("scaffold", relative, "no change")
    if force:
        return Change("scaffold", relative, "update", detail="overwritten (--force)")
    if keep_edited:
        return Change("scaffold", relative, "no change", detail="kept: edited by you")
    raise BadInput(
        str(generated.path),
        "exists with different content; opslib will not overwrite your code",
        "keep your file (steps 2-5 work with it), rename job.name, or re-run with "
        "--force to replace it with the template",
    )


def scaffold(
    spec: Spec,
    service_dir: Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    keep_edited: bool = False,
) -> Plan:
    """Plan, then (unless dry_run) write the job module and its test."""
    result, to_write = plan(spec, Path(service_dir), force=force, keep_edited=keep_edited)
    if not dry_run:
        for generated in to_write:
            atomic_write(generated.path, generated.text)
    return result


def _require_service(service_dir: Path) -> None:
    if not (service_dir / "batch_endpoint.py").is_file():
        raise BadInput(
            str(service_dir),
            "is not a service directory (no batch_endpoint.py)",
            "pass the folder that holds batch_endpoint.py, e.g. --service-dir service",
        )
