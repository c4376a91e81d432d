"""Rate and retry arithmetic, free of I/O so it is testable with a fake clock and a seeded RNG.

The authoritative token bucket lives in PostgreSQL (`take_token`); `RollingWindowBucket` is the
same rule in Python, used to reason about it and to test it without a server."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

TOKEN_WAIT_RANGE_S = (0.7, 1.3)
PAGE_JITTER_RANGE_S = (0.25, 0.5)


def token_wait(rng: random.Random) -> float:
    """Randomized pause before asking the bucket again, so waiting workers don't stampede."""
    return rng.uniform(*TOKEN_WAIT_RANGE_S)


def page_jitter(rng: random.Random) -> float:
    return rng.uniform(*PAGE_JITTER_RANGE_S)


def backoff_delay(
    attempt: int, rng: random.Random, *, base_s: float = 1.0, cap_s: float = 30.0
) -> float:
    """Exponential backoff with "equal jitter" for retry `attempt` (1 = first retry)."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime, *, cap_s: float = 300.0) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (any of the
    three RFC 9110 formats), capped so a hostile or broken header cannot stall a worker."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(cap_s, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates are UTC by definition
        when = when.replace(tzinfo=UTC)
    return min(cap_s, max(0.0, (when - now).total_seconds()))


@dataclass
class RollingWindowBucket:
    """A token bucket that also allows at most `capacity` grants in any `window_s` seconds.

    A plain bucket of capacity N refilled N/min lets 2N requests through in its first minute
    (N stored + N refilled); the window cap makes it safe against a server that counts requests
    in a rolling window, while the sustained rate stays N per window."""

    capacity: int
    refill_per_min: float
    window_s: float = 61.0
    tokens: float = field(default=-1.0)
    updated_at: float = 0.0
    grants: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.capacity)

    def _refill(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated_at)
        return min(self.capacity, self.tokens + elapsed * self.refill_per_min / 60)

    def take(self, now: float) -> bool:
        tokens = self._refill(now)
        while self.grants and self.grants[0] <= now - self.window_s:
            self.grants.popleft()
        self.updated_at = max(now, self.updated_at)
        if tokens >= 1 and len(self.grants) < self.capacity:
            self.tokens = tokens - 1
            self.grants.append(now)
            return True
        self.tokens = tokens
        return False
