"""Rate and retry arithmetic, free of I/O so it is testable with a fake clock and a seeded RNG.

The token bucket itself lives in PostgreSQL (`take_token_or_wait`); `window_cap` is its rule
for the most requests any rolling window may see."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from swiftbolt_pipeline.core.clock import Clock

PAGE_JITTER_RANGE_S = (0.25, 0.5)
# A waiting worker wakes when its token is due plus a random spread of a tenth of the wait
# (within these bounds), so workers waiting for the same token do not ask at the same instant.
TOKEN_SPREAD_FRACTION = 0.1
TOKEN_SPREAD_RANGE_S = (0.005, 0.25)
# ...and asks again at least this often, so new limits (`tokens set`) take effect soon.
MAX_TOKEN_SLEEP_S = 5.0


def window_cap(refill_per_min: float, window_s: float) -> int:
    """Most grants in any `window_s` seconds: the sustained rate's share of the window (at least
    one), and never more than R when the window is a minute plus a safety margin (a server
    counting R per rolling minute must never see R + 1). The 1e-9 absorbs float rounding, as
    in the SQL `token_window_cap`."""
    return max(1, math.floor(refill_per_min * min(window_s, 60) / 60 + 1e-9))


def sustained_per_min(refill_per_min: float, window_s: float) -> float:
    """Requests per minute granted under constant demand: the refill rate, unless rounding the
    window cap down to whole requests makes the window the tighter limit."""
    return min(refill_per_min, window_cap(refill_per_min, window_s) * 60 / window_s)


def token_pause(due_s: float, rng: random.Random) -> float:
    """How long a refused worker sleeps before asking again: until its token is due, plus a
    small randomized spread."""
    low, high = TOKEN_SPREAD_RANGE_S
    spread = min(high, max(low, due_s * TOKEN_SPREAD_FRACTION))
    return min(due_s, MAX_TOKEN_SLEEP_S) + rng.uniform(0, spread)


def wait_for_token(
    ask: Callable[[], float],
    clock: Clock,
    rng: random.Random,
    *,
    max_wait_s: float | None = None,
) -> float | None:
    """Ask the bucket until it grants. `ask()` returns 0 for a grant, else the seconds until a
    token is due. Returns the seconds slept, or None (without sleeping further) as soon as the
    next token is due later than `max_wait_s` after the first ask."""
    waited = 0.0
    while (due := ask()) > 0:
        if max_wait_s is not None and waited + due > max_wait_s:
            return None
        pause = token_pause(due, rng)
        clock.sleep(pause)
        waited += pause
    return waited


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
