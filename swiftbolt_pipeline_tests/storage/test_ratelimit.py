"""The shared token bucket in PostgreSQL: rolling-window semantics, status, limits, limiter."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core.errors import RATE_LIMIT_EXCEEDED, ProviderError
from swiftbolt_pipeline.storage import ratelimit
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.doubles import FakeClock, RollingWindowBucket
from swiftbolt_pipeline_tests.storage import token_worker

# Far in the future, so every explicit `p_at` is after the bucket's `updated_at`.
T0 = datetime(2031, 1, 6, 15, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def take(conn: psycopg.Connection, seconds: float, provider: str = "polygon") -> bool:
    row = conn.execute("SELECT take_token(%s, %s)", (provider, at(seconds))).fetchone()
    assert row is not None
    return bool(row[0])


def status(conn: psycopg.Connection, seconds: float) -> tuple[object, ...]:
    row = conn.execute("SELECT * FROM get_token_status('polygon', %s)", (at(seconds),)).fetchone()
    assert row is not None
    return tuple(row)


def configure(
    conn: psycopg.Connection, capacity: int, refill_per_min: float, window_s: float
) -> None:
    ratelimit.set_limits(
        conn, "polygon", capacity=capacity, refill_per_min=refill_per_min, window_s=window_s
    )


def max_in_window(times: list[float], window: float) -> int:
    """The most grants in any half-open window [t, t + window)."""
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_no_2n_in_the_first_minute(aconn: psycopg.Connection) -> None:
    configure(aconn, 5, 5, 61)
    assert [take(aconn, 0) for _ in range(5)] == [True] * 5
    assert take(aconn, 0) is False
    # At +30 s a plain bucket would have refilled 2.5 tokens; the window is still full.
    assert take(aconn, 30) is False
    assert take(aconn, 30.5) is False
    assert take(aconn, 60) is False
    assert take(aconn, 60.999) is False
    assert take(aconn, 61) is True
    assert [take(aconn, 61) for _ in range(5)] == [True] * 4 + [False]


def test_long_stretch_respects_every_rolling_window_and_keeps_throughput(
    aconn: psycopg.Connection,
) -> None:
    configure(aconn, 5, 5, 61)
    python_bucket = RollingWindowBucket(capacity=5, refill_per_min=5, window_s=61)
    asks = [i * 0.5 for i in range(1200)]  # every 0.5 s for 10 simulated minutes
    sql_decisions = [take(aconn, t) for t in asks]
    py_decisions = [python_bucket.take(t) for t in asks]
    granted = [t for t, ok in zip(asks, sql_decisions, strict=True) if ok]
    assert max_in_window(granted, 60) <= 5
    assert max_in_window(granted, 61) <= 5
    assert len(granted) >= 0.9 * 5 * (600 / 60)
    assert sql_decisions == py_decisions
    # The table records exactly the grants of the last two windows (older ones are pruned).
    rows = aconn.execute(
        "SELECT granted_at FROM rate_grants WHERE provider = 'polygon' ORDER BY 1"
    ).fetchall()
    recorded = [(r[0] - T0).total_seconds() for r in rows]
    assert recorded == [t for t in granted if t > asks[-1] - 2 * 61]


def take_or_wait(conn: psycopg.Connection, seconds: float) -> float:
    row = conn.execute("SELECT take_token_or_wait('polygon', %s)", (at(seconds),)).fetchone()
    assert row is not None
    return float(row[0])


@pytest.mark.parametrize(
    ("capacity", "refill_per_min", "window_s", "cap", "seed"),
    [
        (3, 30, 2, 1, 1),  # 1 per 2 s: the window cap follows the rate, not the 3 stored
        (3, 60, 5, 5, 2),  # 5 per 5 s, bursts of 3
        (1, 120, 0.5, 1, 3),
        (4, 15, 3, 1, 4),  # under one per window: one at a time, the refill holds the rate
        (3, 90, 2.5, 3, 5),  # the window binds right after a burst
        (6, 120, 2, 4, 6),  # ...and caps a burst below the capacity
    ],
)
def test_sql_function_and_python_bucket_decide_alike(
    aconn: psycopg.Connection,
    capacity: int,
    refill_per_min: float,
    window_s: float,
    cap: int,
    seed: int,
) -> None:
    configure(aconn, capacity, refill_per_min, window_s)
    bucket = RollingWindowBucket(
        capacity=capacity, refill_per_min=refill_per_min, window_s=window_s
    )
    rng = random.Random(seed)
    now = 0.0
    asks = []
    for _ in range(300):
        now += rng.choice([0, 0, 0.25, 0.25, 0.5, 1.0, 2.5])  # exact in binary and numeric
        asks.append(now)
    sql = [take_or_wait(aconn, t) for t in asks]
    py = [bucket.take_or_wait(t) for t in asks]
    assert sql == pytest.approx(py, abs=1e-6)
    granted = [t for t, wait in zip(asks, sql, strict=True) if wait == 0]
    assert max_in_window(granted, window_s) <= cap
    assert 0 < len(granted) < len(asks)


def test_take_token_or_wait_says_when_the_token_is_due(aconn: psycopg.Connection) -> None:
    configure(aconn, 5, 5, 61)
    assert [take_or_wait(aconn, 0) for _ in range(5)] == [0] * 5
    assert take_or_wait(aconn, 0) == pytest.approx(61)  # the window, not the 12 s refill
    assert take_or_wait(aconn, 30) == pytest.approx(31)
    assert take(aconn, 60.5) is False
    assert take_or_wait(aconn, 61) == 0
    configure(aconn, 1, 60, 61)  # one per second: the refill decides
    assert take_or_wait(aconn, 100) == 0
    assert take_or_wait(aconn, 100.25) == pytest.approx(0.75)
    assert take_or_wait(aconn, 101) == 0


def test_window_cap_follows_the_refill_rate_not_the_capacity(aconn: psycopg.Connection) -> None:
    configure(aconn, 1, 600, 61)  # 10 per second without bursts
    asks = [i / 10 for i in range(60)]
    assert [take(aconn, t) for t in asks] == [True] * 60
    assert take(aconn, 5.95) is False  # no burst: the next token is due at 6.0
    configure(aconn, 100, 6000, 61)  # a paid plan: bursts of 100, 6000 per minute
    assert [take(aconn, 100) for _ in range(101)] == [True] * 100 + [False]
    assert [take(aconn, 101) for _ in range(101)] == [True] * 100 + [False]
    configure(aconn, 5, 5, 61)  # the free plan keeps 5 per 61 s even with 10 stored
    aconn.execute("UPDATE rate_buckets SET capacity = 10, tokens = 10 WHERE provider = 'polygon'")
    assert [take(aconn, 200) for _ in range(6)] == [True] * 5 + [False]


def test_get_token_status_values(aconn: psycopg.Connection) -> None:
    configure(aconn, 5, 5, 61)
    assert take(aconn, 0) and take(aconn, 0) and take(aconn, 0)
    assert status(aconn, 0) == ("polygon", Decimal(2), 5, Decimal(5), Decimal(36))
    # 12 s later one token has flowed back (3 stored) but 3 grants are still in the window.
    assert status(aconn, 12) == ("polygon", Decimal(2), 5, Decimal(5), Decimal(24))
    assert take(aconn, 12) and take(aconn, 12)
    assert status(aconn, 12)[1] == Decimal(0)
    assert take(aconn, 12) is False
    assert status(aconn, 61)[1] == Decimal(3)  # the 3 grants at t0 left the window
    assert status(aconn, 200) == ("polygon", Decimal(5), 5, Decimal(5), Decimal(0))


def test_get_token_status_unknown_provider_is_empty(aconn: psycopg.Connection) -> None:
    assert aconn.execute("SELECT * FROM get_token_status('nope')").fetchall() == []


def test_token_status_helper(aconn: psycopg.Connection) -> None:
    configure(aconn, 7, 14, 61)
    (row,) = ratelimit.token_status(aconn, "polygon")
    assert row == ratelimit.TokenStatus("polygon", 7.0, 7, 14.0, 0.0, 61.0)
    # 14/min is 14.23 per 61 s window, rounded down to 14 grants: 13.77 per minute.
    assert row.sustained_per_min == pytest.approx(14 * 60 / 61)
    assert isinstance(row.available_tokens, float)
    assert row.to_json() == {
        "provider": "polygon",
        "available_tokens": 7.0,
        "capacity": 7,
        "refill_rate": 14.0,
        "seconds_until_full": 0.0,
    }
    everyone = ratelimit.token_status(aconn)
    assert [s.provider for s in everyone] == ["alpaca", "finnhub", "polygon", "tradier", "yahoo"]
    with pytest.raises(LookupError, match="nope"):
        ratelimit.token_status(aconn, "nope")


def test_set_limits_changes_limits_refills_and_forgets_grants(aconn: psycopg.Connection) -> None:
    configure(aconn, 2, 2, 61)
    assert take(aconn, 0) and take(aconn, 0)
    assert take(aconn, 1) is False
    ratelimit.set_limits(aconn, "polygon", capacity=3, refill_per_min=9)
    row = aconn.execute(
        "SELECT capacity, refill_per_min, tokens, window_s FROM rate_buckets "
        "WHERE provider = 'polygon'"
    ).fetchone()
    assert row == (3, Decimal(9), Decimal(3), Decimal(61))  # window kept when not given
    assert aconn.execute("SELECT count(*) FROM rate_grants WHERE provider = 'polygon'").fetchone()
    assert [take(aconn, 2) for _ in range(4)] == [True, True, True, False]
    # Other providers are untouched.
    assert aconn.execute(
        "SELECT capacity FROM rate_buckets WHERE provider = 'tradier'"
    ).fetchone() == (1000,)


def test_set_limits_commits_on_a_non_autocommit_connection(
    conn: psycopg.Connection, db_url: str
) -> None:
    ratelimit.set_limits(conn, "alpaca", capacity=11, refill_per_min=22, window_s=5)
    with psycopg.connect(db_url) as other:
        assert other.execute(
            "SELECT capacity, refill_per_min, window_s FROM rate_buckets WHERE provider = 'alpaca'"
        ).fetchone() == (11, Decimal(22), Decimal(5))


def test_set_limits_unknown_provider(aconn: psycopg.Connection) -> None:
    with pytest.raises(LookupError, match="nope"):
        ratelimit.set_limits(aconn, "nope", capacity=1, refill_per_min=1)
    assert aconn.execute("SELECT count(*) FROM rate_buckets").fetchone() == (5,)


def test_take_token_unknown_provider_raises(aconn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown rate-limited provider"):
        aconn.execute("SELECT take_token('nope')")


def test_set_limits_rejects_non_positive_limits(aconn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        ratelimit.set_limits(aconn, "polygon", capacity=0, refill_per_min=5)


class _FreeingClock(FakeClock):
    """A fake clock that refills the bucket (from another connection) after N sleeps."""

    def __init__(self, url: str, free_after: int) -> None:
        super().__init__(T0)
        self.url = url
        self.free_after = free_after

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.sleeps) == self.free_after:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("DELETE FROM rate_grants WHERE provider = 'polygon'")
                conn.execute("UPDATE rate_buckets SET tokens = 1 WHERE provider = 'polygon'")


def test_limiter_sleeps_until_the_bucket_says_the_token_is_due(
    aconn: psycopg.Connection, db_url: str
) -> None:
    configure(aconn, 1, 30, 61)  # one token every 2 s
    clock = _FreeingClock(db_url, free_after=1)
    with psycopg.connect(db_url, autocommit=True) as own:
        limiter = ratelimit.PostgresTokenLimiter(own, "polygon", clock, rng=random.Random(7))
        assert limiter.acquire() == 0
        assert clock.sleeps == []  # a token was available: no waiting
        waited = limiter.acquire()
    # One sleep: the 2 s until the next token (less the real milliseconds since the grant),
    # plus at most a tenth of it as spread.
    assert len(clock.sleeps) == 1 and waited == clock.sleeps[0]
    assert 1.8 <= waited <= 2.2


def test_limiter_asks_again_every_few_seconds_during_a_long_wait(
    aconn: psycopg.Connection, db_url: str
) -> None:
    configure(aconn, 2, 2, 61)  # two per 61 s: after two grants, the next is due in 61 s
    clock = _FreeingClock(db_url, free_after=3)
    with psycopg.connect(db_url, autocommit=True) as own:
        limiter = ratelimit.PostgresTokenLimiter(own, "polygon", clock, rng=random.Random(7))
        limiter.acquire()
        limiter.acquire()
        limiter.acquire()  # refused 3 times, then the bucket is freed
    assert len(clock.sleeps) == 3
    assert all(5.0 <= s <= 5.25 for s in clock.sleeps)
    assert len(set(clock.sleeps)) == 3  # randomized, not a constant pause


def test_limiter_with_a_deadline_gives_up_at_once_when_the_token_is_due_later(
    aconn: psycopg.Connection, db_url: str
) -> None:
    configure(aconn, 1, 0.6, 61)  # one token per 100 s
    clock = FakeClock(T0)
    with psycopg.connect(db_url, autocommit=True) as own:
        limiter = ratelimit.PostgresTokenLimiter(own, "polygon", clock, max_wait_s=8)
        limiter.acquire()
        with pytest.raises(ProviderError) as info:
            limiter.acquire()
    assert info.value.code == RATE_LIMIT_EXCEEDED
    assert clock.sleeps == []
    assert aconn.execute(
        "SELECT count(*) FROM rate_grants WHERE provider = 'polygon'"
    ).fetchone() == (1,)


def test_limiter_surfaces_unknown_provider(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as own:
        limiter = ratelimit.PostgresTokenLimiter(own, "nope", FakeClock(T0))
        with pytest.raises(psycopg.errors.NoDataFound):
            limiter.acquire()


def test_processes_sharing_the_bucket_never_exceed_capacity_in_any_window(
    aconn: psycopg.Connection, db_url: str
) -> None:
    capacity, window_s, run_s, workers = 3, 1.0, 1.8, 4
    # Tokens refill fast (capacity per second): the window alone has to hold the line.
    configure(aconn, capacity, capacity * 60, window_s)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=token_worker.hammer, args=(db_url, "polygon", start, run_s, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        start.wait(60)
        outcomes = [results.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    granted = sum(g for g, _ in outcomes)
    asked = sum(a for _, a in outcomes)
    rows = aconn.execute(
        "SELECT granted_at FROM rate_grants WHERE provider = 'polygon' ORDER BY 1"
    ).fetchall()
    # run_s < 2 * window_s: nothing was pruned, so the table holds every grant.
    assert len(rows) == granted
    times = [(r[0] - rows[0][0]).total_seconds() for r in rows]
    assert max_in_window(times, window_s) <= capacity
    assert asked > 10 * granted  # the workers really competed
    # ...and the budget was used: capacity per window, two windows.
    assert granted >= capacity * 2 - 1


@pytest.mark.slow
def test_three_workers_use_90_percent_of_a_1_per_second_server_without_429(
    aconn: psycopg.Connection, db_url: str, emulator: str
) -> None:
    """Three fetching processes share the bucket against a server allowing 5 requests per
    rolling 5 s (1 per second). The bucket grants 5 per 5.25 s (the margin absorbs the time
    from grant to arrival): at best 95% of the server's rate."""
    run_s, workers = 40.0, 3
    configure(aconn, 1, 60, 5.25)
    httpx.put(
        f"{emulator}/_emulator/config", json={"rate_limit": 5, "rate_window_s": 5.0}
    ).raise_for_status()
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    args = (db_url, emulator, EMULATOR_KEY, start, run_s, results)
    procs = [ctx.Process(target=token_worker.request_loop, args=args) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        start.wait(60)
        outcomes = [results.get(timeout=run_s + 60) for _ in procs]
    finally:
        httpx.put(f"{emulator}/_emulator/config", json={"rate_limit": None}).raise_for_status()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    accepted = sum(a for a, _, _ in outcomes)
    assert [(r, o) for _, r, o in outcomes] == [(0, 0)] * workers  # no 429, no other failure
    assert all(a > 0 for a, _, _ in outcomes)  # every worker got its share
    assert accepted >= 0.9 * run_s * 1.0, outcomes
