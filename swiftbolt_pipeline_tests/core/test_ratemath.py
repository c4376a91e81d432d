"""Pure rate and retry arithmetic: backoff, Retry-After, and the rolling-window bucket."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core.ratemath import (
    PAGE_JITTER_RANGE_S,
    TOKEN_WAIT_RANGE_S,
    RollingWindowBucket,
    backoff_delay,
    page_jitter,
    parse_retry_after,
    token_wait,
)

NOW = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)


def max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_contract_ranges() -> None:
    assert TOKEN_WAIT_RANGE_S == (0.7, 1.3)
    assert PAGE_JITTER_RANGE_S == (0.25, 0.5)


def test_token_wait_and_page_jitter_bounds_and_spread() -> None:
    rng = random.Random(0)
    waits = [token_wait(rng) for _ in range(2000)]
    jitters = [page_jitter(rng) for _ in range(2000)]
    assert all(0.7 <= w <= 1.3 for w in waits)
    assert all(0.25 <= j <= 0.5 for j in jitters)
    assert min(waits) < 0.75 and max(waits) > 1.25  # spread over the whole range
    assert min(jitters) < 0.27 and max(jitters) > 0.48


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (4, 4, 8), (5, 8, 16), (6, 15, 30), (7, 15, 30),
     (20, 15, 30)],
)  # fmt: skip
def test_backoff_bounds_per_attempt(attempt: int, low: float, high: float) -> None:
    rng = random.Random(attempt)
    delays = [backoff_delay(attempt, rng) for _ in range(500)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) * 0.8  # jittered, not constant


def test_backoff_custom_base_and_cap() -> None:
    rng = random.Random(3)
    assert all(0.05 <= backoff_delay(1, rng, base_s=0.1) <= 0.1 for _ in range(100))
    assert all(2.5 <= backoff_delay(10, rng, base_s=1, cap_s=5) <= 5 for _ in range(100))


def test_backoff_is_deterministic_for_a_seed() -> None:
    a = [backoff_delay(n, random.Random(9)) for n in range(1, 8)]
    b = [backoff_delay(n, random.Random(9)) for n in range(1, 8)]
    assert a == b


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("-3", None),  # not delta-seconds (RFC 9110): ignored, the client backs off instead
        ("1.5", None),
        ("100000", 300.0),  # capped
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_retry_after_http_date() -> None:
    future = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert future == "Fri, 20 Mar 2026 16:00:30 GMT"
    assert parse_retry_after(future, NOW) == 30.0
    past = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0
    assert parse_retry_after("Fri, 20 Mar 2026 17:00:00 +0100", NOW) == 0.0
    assert parse_retry_after("Fri, 20 Mar 2026 16:01:00 +0000", NOW) == 60.0


@pytest.mark.parametrize("header", ["Fri Mar 20 16:01:00 2026", "Fri, 20 Mar 2026 16:01:00 -0000"])
def test_retry_after_obsolete_http_date_formats(header: str) -> None:
    # RFC 9110 5.6.7: recipients MUST accept all three HTTP-date formats (asctime included).
    assert parse_retry_after(header, NOW) == 60.0


@pytest.mark.parametrize("header", ["inf", "Infinity", "1e400"])
def test_retry_after_that_is_not_delta_seconds_is_rejected(header: str) -> None:
    value = parse_retry_after(header, NOW)
    assert value is None or value < 86_400


def test_bucket_first_window_holds_capacity_not_2n() -> None:
    bucket = RollingWindowBucket(capacity=5, refill_per_min=5, window_s=61)
    asks = [i * 0.1 for i in range(int(61 / 0.1))]  # an ask every 100 ms for 61 s
    assert sum(bucket.take(t) for t in asks) == 5
    assert bucket.take(61.0) is True


def test_plain_bucket_would_allow_2n_without_the_window() -> None:
    """The reason the window exists: with an ineffective window the first minute sees ~2N."""
    bucket = RollingWindowBucket(capacity=5, refill_per_min=5, window_s=1e-9)
    asks = [i * 0.1 for i in range(600)]
    assert sum(bucket.take(t) for t in asks) >= 9


def test_bucket_sustains_at_least_90_percent_of_the_rate() -> None:
    bucket = RollingWindowBucket(capacity=5, refill_per_min=5)
    asks = [i * 0.5 for i in range(2400)]  # 20 minutes
    grants = [t for t in asks if bucket.take(t)]
    assert max_in_window(grants, 60) <= 5
    assert len(grants) >= 0.9 * 5 * 20


def test_bucket_defaults() -> None:
    bucket = RollingWindowBucket(capacity=3, refill_per_min=6)
    assert (bucket.tokens, bucket.window_s) == (3.0, 61.0)
    assert RollingWindowBucket(capacity=3, refill_per_min=6, tokens=0).take(0) is False


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 8),
    refill_per_min=st.floats(0.5, 600),
    window_s=st.floats(0.1, 120),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=200),
)
def test_bucket_never_exceeds_capacity_in_any_window(
    capacity: int, refill_per_min: float, window_s: float, gaps: list[float]
) -> None:
    bucket = RollingWindowBucket(
        capacity=capacity, refill_per_min=refill_per_min, window_s=window_s
    )
    now, grants = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.take(now):
            grants.append(now)
        assert 0 <= bucket.tokens <= capacity
    assert max_in_window(grants, window_s) <= capacity
    # The token rule also holds: never more than the stored tokens plus what refilled.
    if grants:
        span = grants[-1] - grants[0]
        assert len(grants) <= capacity + span * refill_per_min / 60 + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    capacity=st.integers(1, 6),
    window_s=st.sampled_from([1.0, 2.0, 61.0]),
    asks=st.integers(50, 400),
)
def test_bucket_under_constant_demand_keeps_capacity_per_window(
    capacity: int, window_s: float, asks: int
) -> None:
    # Tokens refill at exactly capacity per window: the window, not the tokens, binds.
    bucket = RollingWindowBucket(capacity, capacity * 60 / window_s, window_s)
    step = window_s / 20
    grants = [i * step for i in range(asks) if bucket.take(i * step)]
    duration = asks * step
    assert max_in_window(grants, window_s) <= capacity
    assert len(grants) >= capacity * int(duration / (window_s + step))
