"""Test doubles: a clock that moves only when told, and the PostgreSQL token bucket's rule in
Python, to reason about the bucket and check it without a server."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from swiftbolt_pipeline.core.ratemath import window_cap


class FakeClock:
    """A clock that only moves when slept on or advanced; records every sleep."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))


@dataclass
class RollingWindowBucket:
    """A token bucket (`capacity` C stored, refilled at `refill_per_min` R) that also grants at
    most `window_cap(R, window_s)` in any `window_s` seconds.

    A plain bucket with C = R lets 2R requests through in its first minute (R stored + R
    refilled); the window cap makes it safe against a server that counts requests in a rolling
    window. The cap follows R, not C: C = 1, R = 600 is 10 requests a second without bursts."""

    capacity: int
    refill_per_min: float
    window_s: float = 61.0
    tokens: float = field(default=-1.0)
    updated_at: float = 0.0
    grants: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.capacity)

    @property
    def window_cap(self) -> int:
        return window_cap(self.refill_per_min, self.window_s)

    def _refill(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated_at)
        return min(self.capacity, self.tokens + elapsed * self.refill_per_min / 60)

    def take_or_wait(self, now: float) -> float:
        """0 when a token is granted at `now`, else the seconds until one is due."""
        tokens = self._refill(now)
        while self.grants and self.grants[0] <= now - self.window_s:
            self.grants.popleft()
        self.updated_at = max(now, self.updated_at)
        cap = self.window_cap
        if tokens >= 1 and len(self.grants) < cap:
            self.tokens = tokens - 1
            self.grants.append(now)
            return 0.0
        self.tokens = tokens
        token_due = (1 - tokens) * 60 / self.refill_per_min if tokens < 1 else 0.0
        # The cap-th newest grant must leave the window before there is room.
        window_due = self.grants[-cap] + self.window_s - now if len(self.grants) >= cap else 0.0
        return max(token_due, window_due, 1e-6)

    def take(self, now: float) -> bool:
        return self.take_or_wait(now) == 0
