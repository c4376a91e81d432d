"""Injected time, so time-based code is testable without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; `fixed_now` pins `now()` (SWIFTBOLT_NOW) without touching `sleep`."""

    def __init__(self, fixed_now: datetime | None = None) -> None:
        self._fixed_now = fixed_now

    def now(self) -> datetime:
        return self._fixed_now or datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
