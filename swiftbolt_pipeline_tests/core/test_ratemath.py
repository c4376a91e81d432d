"""Pure rate and retry arithmetic: backoff, Retry-After, and the rolling-window bucket."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core.ratemath import (
    MAX_TOKEN_SLEEP_S,
    PAGE_JITTER_RANGE_S,
    backoff_delay,
    page_jitter,
    parse_retry_after,
    sustained_per_min,
    token_pause,
    wait_for_token,
    window_cap,
)
from swiftbolt_pipeline_tests.doubles import FakeClock, RollingWindowBucket

NOW = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)


def max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_contract_ranges() -> None:
    assert PAGE_JITTER_RANGE_S == (0.25, 0.5)


def test_page_jitter_bounds_and_spread() -> None:
    rng = random.Random(0)
    jitters = [page_jitter(rng) for _ in range(2000)]
    assert all(0.25 <= j <= 0.5 for j in jitters)
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
def test_bucket_never_exceeds_the_refill_rate_in_any_window(
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
    # R x window / 60 in any window (a single grant is always possible).
    assert max_in_window(grants, window_s) <= max(1, refill_per_min * window_s / 60 + 1e-9)
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
    # Tokens refill at exactly capacity per window (a minute at most: a longer window is a
    # minute plus a margin): the window, not the tokens, binds.
    bucket = RollingWindowBucket(capacity, capacity * 60 / min(window_s, 60), window_s)
    step = window_s / 20
    grants = [i * step for i in range(asks) if bucket.take(i * step)]
    duration = asks * step
    assert max_in_window(grants, window_s) <= capacity
    assert len(grants) >= capacity * int(duration / (window_s + step))


@pytest.mark.parametrize(
    ("capacity", "refill_per_min", "window_s", "cap", "per_min"),
    [
        (5, 5, 61, 5, 5 * 60 / 61),  # free plan: 5.08 rounds down to 5 per 61 s
        (1, 600, 61, 600, 600 * 60 / 61),  # 10 per second, no bursts
        (100, 6000, 61, 6000, 6000 * 60 / 61),  # a paid plan
        (3, 90, 2.2, 3, 3 * 60 / 2.2),
        (3, 5 * 60 / 2.2, 2.2, 5, 5 * 60 / 2.2),  # float rate whose product is exactly 5
        (2, 0.5, 61, 1, 0.5),  # under one per window: one grant, the refill holds the rate
    ],
)
def test_window_cap_follows_the_refill_rate_not_the_capacity(
    capacity: int, refill_per_min: float, window_s: float, cap: int, per_min: float
) -> None:
    assert window_cap(refill_per_min, window_s) == cap
    assert RollingWindowBucket(capacity, refill_per_min, window_s).window_cap == cap
    assert sustained_per_min(refill_per_min, window_s) == pytest.approx(per_min)


def greedy_grants(bucket: RollingWindowBucket, seconds: float) -> list[float]:
    """One worker that asks again exactly when the bucket says its token is due."""
    now, grants = 0.0, []
    while now < seconds:
        due = bucket.take_or_wait(now)
        if due == 0:
            grants.append(now)
        now += due
    return grants


def test_capacity_1_refill_600_is_ten_per_second() -> None:
    grants = greedy_grants(RollingWindowBucket(1, 600, 61), 60)
    assert len(grants) in (600, 601)  # one every 0.1 s (the old cap gave 1 per 61 s)
    assert max_in_window(grants, 1 - 1e-6) <= 10  # no bursts


def test_paid_plan_gets_its_rate_per_minute() -> None:
    grants = greedy_grants(RollingWindowBucket(100, 6000, 61), 180)
    assert grants[99] == 0 and grants[100] > 0  # a burst of 100, then the refill
    assert max_in_window(grants, 60) <= 6000
    steady = [t for t in grants if 60 <= t < 180]
    assert 2 * 6000 * 60 / 61 - 100 <= len(steady) <= 2 * 6000 + 100


@pytest.mark.parametrize("rate", [60, 120, 200, 2000])
def test_a_full_bucket_never_sends_more_than_its_rate_in_a_rolling_minute(rate: int) -> None:
    """Capacity = rate (the default buckets): a burst of R, then the refill, never R + 1 in
    a minute, which a server counting R per rolling minute would answer with a 429."""
    grants = greedy_grants(RollingWindowBucket(rate, rate, 61), 300)
    assert max_in_window(grants, 60) <= rate
    assert len(grants) >= 0.97 * rate * 300 / 60


def test_free_plan_never_sees_more_than_5_in_a_rolling_minute() -> None:
    grants = greedy_grants(RollingWindowBucket(5, 5, 61), 600)
    assert grants[:5] == [0.0] * 5 and grants[5] == pytest.approx(61)  # no 2N at the start
    assert max_in_window(grants, 60) <= 5
    assert len(grants) >= 0.98 * 5 * 600 / 61


def test_take_or_wait_says_when_the_next_token_is_due() -> None:
    bucket = RollingWindowBucket(5, 5, 61)
    assert [bucket.take_or_wait(0) for _ in range(5)] == [0] * 5
    assert bucket.take_or_wait(0) == pytest.approx(61)  # the window, not the 12 s refill
    assert bucket.take_or_wait(30) == pytest.approx(31)
    one_per_second = RollingWindowBucket(1, 60, 61)
    assert one_per_second.take_or_wait(0) == 0
    assert one_per_second.take_or_wait(0.25) == pytest.approx(0.75)  # the refill


@pytest.mark.parametrize(
    ("due", "low", "high"),
    [(1.0, 1.0, 1.1), (0.01, 0.01, 0.015), (10.0, 5.0, 5.25), (61.0, 5.0, 5.25)],
)
def test_token_pause_is_due_time_plus_a_small_spread(due: float, low: float, high: float) -> None:
    rng = random.Random(5)
    pauses = [token_pause(due, rng) for _ in range(500)]
    assert all(low <= p <= high for p in pauses)
    assert max(pauses) - min(pauses) > 0.8 * (high - low)  # randomized over the whole spread


class _BucketClock(FakeClock):
    """A fake clock that is also the bucket's time."""

    def __init__(self) -> None:
        super().__init__(NOW)

    def seconds(self) -> float:
        return (self.now() - NOW).total_seconds()


def test_waiting_worker_sleeps_once_until_its_token_is_due() -> None:
    clock = _BucketClock()
    bucket = RollingWindowBucket(1, 60, 61)  # one per second
    asks: list[float] = []

    def ask() -> float:
        asks.append(clock.seconds())
        return bucket.take_or_wait(clock.seconds())

    rng = random.Random(3)
    waits = [wait_for_token(ask, clock, rng) for _ in range(10)]
    assert waits[0] == 0 and clock.sleeps[: len(waits) - 1] == waits[1:]
    # One refused ask and one sleep per token (no polling), each until due plus < 0.1 s.
    assert len(clock.sleeps) == 9 and len(asks) == 19
    assert all(1.0 <= s <= 1.1 for s in clock.sleeps)
    assert len(set(clock.sleeps)) == 9  # randomized
    assert 9.0 < clock.seconds() <= 9.0 + 9 * 0.1


def test_long_waits_are_slept_in_bounded_steps() -> None:
    clock = _BucketClock()
    bucket = RollingWindowBucket(5, 5, 61)
    for _ in range(5):
        bucket.take(0)
    waited = wait_for_token(lambda: bucket.take_or_wait(clock.seconds()), clock, random.Random(1))
    assert waited == pytest.approx(clock.seconds(), abs=1e-5)  # the clock keeps microseconds
    assert 61 <= clock.seconds() <= 61 + 0.25  # granted when the window frees up...
    assert all(s <= MAX_TOKEN_SLEEP_S + 0.25 for s in clock.sleeps)  # ...asking every <= 5.25 s
    assert len(clock.sleeps) >= 61 / (MAX_TOKEN_SLEEP_S + 0.25)


def test_deadline_gives_up_without_sleeping_when_the_token_is_due_too_late() -> None:
    clock = _BucketClock()
    bucket = RollingWindowBucket(1, 0.6, 61)  # one per 100 s
    assert bucket.take(0)
    ask = lambda: bucket.take_or_wait(clock.seconds())  # noqa: E731
    assert wait_for_token(ask, clock, random.Random(1), max_wait_s=8) is None
    assert clock.sleeps == []
    quick = RollingWindowBucket(1, 30, 61)  # one per 2 s: due within the deadline
    assert quick.take(0)
    waited = wait_for_token(
        lambda: quick.take_or_wait(clock.seconds()), clock, random.Random(1), max_wait_s=8
    )
    assert waited is not None and 2 <= waited <= 2.2


def test_three_waiting_workers_use_at_least_95_percent_of_the_rate() -> None:
    """Event simulation: three workers share a bucket of 1 per second (window 5.25 s allows 5),
    each sending as soon as it holds a token and sleeping until due when refused."""
    bucket = RollingWindowBucket(1, 60, 5.25)
    rng = random.Random(11)
    next_ask = [0.0, 0.0, 0.0]
    grants: list[float] = []
    asks = 0
    while (now := min(next_ask)) < 300:
        worker = next_ask.index(now)
        due = bucket.take_or_wait(now)
        asks += 1
        if due == 0:
            grants.append(now)
            next_ask[worker] = now + 0.05  # the request's round trip
        else:
            next_ask[worker] = now + token_pause(due, rng)
    assert max_in_window(grants, 5.25) <= 5
    # The best this bucket can do is 5 per 5.25 s (95.2% of 1/s).
    assert len(grants) >= 0.95 * 300 * 5 / 5.25
    # Waiting workers do not stampede: per token, each worker asks about once.
    assert asks <= (3 + 1) * len(grants) + 3
