"""Waiting on long-running operations with a progress bar (tqdm), in notebooks and terminals."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm


def wait(operation: Any, label: str, progress: bool = True, timeout: float = 1800.0) -> Any:
    """The operation's result; shows elapsed time while it runs; raises its error."""
    started = time.monotonic()
    with tqdm(desc=label, bar_format="{desc}: {elapsed}", disable=not progress, leave=True) as bar:
        while not operation.done():
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.25)
            bar.update(0)
            bar.refresh()
    return operation.result(timeout=max(1.0, timeout - (time.monotonic() - started)))
