"""A URL rule that compiles its url_for() builder on first use instead of at registration.

Why: werkzeug compiles two builder functions per rule when a route is added (about 0.5 ms
each here), so a service with 100 job routes spent ~70 ms of every cold start building URLs it
never builds. Matching is unchanged; url_for() still works, it compiles on its first call.
Measured by benchmarks/cold_start.py. If werkzeug ever drops the hook, plain Rule is used.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule


class LazyBuilderRule(Rule):
    """werkzeug's Rule, with the builder compiled on demand."""

    def _compile_builder(self, append_unknown: bool = True) -> Any:
        compile_now = super()._compile_builder
        compiled: list[Any] = []

        def build(rule: Rule, *args: Any, **kwargs: Any) -> Any:
            if not compiled:
                compiled.append(compile_now(append_unknown).__get__(rule, None))
            return compiled[0](*args, **kwargs)

        return build


def rule_class() -> type[Rule]:
    """LazyBuilderRule where werkzeug has the hook it overrides, else werkzeug's own Rule."""
    return LazyBuilderRule if hasattr(Rule, "_compile_builder") else Rule
