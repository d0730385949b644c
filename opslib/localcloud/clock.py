"""localcloud's clock: real time plus an offset that tests move forward.

Everything that stamps or schedules (log timestamps, Scheduler's next run, operation times)
reads this clock, so advancing it by a week fires a week of cron runs in seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time shifted by `offset` seconds; `advance` moves it forward."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def set(self, when: datetime) -> None:
        delta = (when - self.now()).total_seconds()
        self.advance(max(delta, 0.0))


def rfc3339(when: datetime) -> str:
    """Google's timestamp form (protobuf JSON): UTC, 0, 3 or 6 fraction digits, Z."""
    when = when.astimezone(UTC)
    base, micro = when.strftime("%Y-%m-%dT%H:%M:%S"), when.microsecond
    if micro == 0:
        return f"{base}Z"
    return f"{base}.{micro // 1000:03d}Z" if micro % 1000 == 0 else f"{base}.{micro:06d}Z"


def parse_rfc3339(text: str) -> datetime:
    """A timestamp as Google's clients send it (Z or offset, up to nanoseconds)."""
    text = text.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, sep, rest = text.partition(".")
    if sep:
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).astimezone(UTC)


def duration_seconds(text: str | float | int | None, default: float = 0.0) -> float:
    """A protobuf Duration ("900s", "0.5s") in seconds."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    if not text.endswith("s"):
        raise ValueError(f"bad duration {text!r}")
    return float(text[:-1])


def duration_text(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:.9f}".rstrip("0") + "s"
