"""Waiting on long-running operations with a progress bar (tqdm), in notebooks and terminals.

`phases` is one bar through the named phases of a step (step 3: build, lease bucket, roll out,
invoker, status): it advances as each phase ends and names the one running. A `wait` inside it
keeps that bar's clock moving instead of drawing a bar of its own; outside one, `wait` shows
the elapsed time on its own line. tqdm.auto draws an ipywidgets bar in JupyterLab and text in a
terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_CURRENT: ContextVar[Phases | None] = ContextVar("opslib_phases", default=None)


class Phases:
    """One bar, one tick per phase: `run("build", build, ...)`."""

    def __init__(self, label: str, names: list[str], progress: bool) -> None:
        self.names = names
        self.bar = tqdm(
            total=len(names),
            desc=label,
            unit="phase",
            disable=not progress,
            leave=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} phases  {postfix}  {elapsed}",
        )

    def run(self, name: str, action: Callable[..., T], *args: Any) -> T:
        self.bar.set_postfix_str(name, refresh=True)
        result = action(*args)
        self.bar.update(1)
        return result

    def tick(self) -> None:
        self.bar.refresh()


@contextmanager
def phases(label: str, names: list[str], progress: bool = True) -> Iterator[Phases]:
    """The bar for a step's phases; it ends at "done" when every phase ran."""
    bar = Phases(label, names, progress)
    token = _CURRENT.set(bar)
    try:
        yield bar
        bar.bar.set_postfix_str("done", refresh=True)
    finally:
        _CURRENT.reset(token)
        bar.bar.close()


def wait(operation: Any, label: str, progress: bool = True, timeout: float = 1800.0) -> Any:
    """The operation's result; shows elapsed time while it runs; raises its error."""
    started = time.monotonic()
    outer = _CURRENT.get()
    own = outer is None and progress
    with tqdm(desc=label, bar_format="{desc}: {elapsed}", disable=not own, leave=True) as bar:
        while not operation.done():
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.25)
            if outer is not None:
                outer.tick()
            bar.update(0)
            bar.refresh()
    return operation.result(timeout=max(1.0, timeout - (time.monotonic() - started)))
