"""Row 1's request counts for SPY's official d1 and a crypto pair at quick sizes: the floors
against hand-computed values, and the rows against what the emulator served and the database
holds (XNYS sessions from exchange_calendars, the emulator's generated minutes)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import exchange_calendars as xcals
import pytest

from swiftbolt_pipeline.bench.daily_crypto import (
    CRYPTO_PAIR,
    DAILY_SYMBOL,
    crypto_floor,
    daily_floor,
    measure_daily_crypto_requests,
)
from swiftbolt_pipeline.bench.env import bench_env
from swiftbolt_pipeline.emulator.crypto import crypto_day

BENCH_TODAY = date(2026, 11, 20)  # the bench's pinned clock, 12:00 New York


def test_floors_from_polygon_limits() -> None:
    # Days on a day range: 20 years of sessions fit one request.
    assert [daily_floor(n) for n in (1, 1226, 5040, 50_000, 50_001)] == [1, 1, 1, 1, 2]
    # 34 days x 1,440 minutes = 48,960 fit; 35 days = 50,400 do not; 90 days = 129,600.
    assert [crypto_floor(n) for n in (1, 34, 35, 69, 90, 730)] == [1, 1, 2, 2, 3, 22]


@pytest.mark.slow  # ~20 s: its own bench world and two backfills
@pytest.mark.usefixtures("clean_env")
# exchange_calendars builds its calendar with a pandas call recent pandas warns about.
@pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
def test_rows_count_the_requests_the_emulator_served(tmp_path: Path) -> None:
    with bench_env(workdir=tmp_path) as env:
        rows, details = measure_daily_crypto_requests(env, daily_years=2, crypto_days=3)
        served = [e["path"] for e in env.emulator("GET", "stats")["log"]]
        with env.connect() as conn:
            stored = dict(
                conn.execute(
                    """SELECT s.ticker || ' ' || b.timeframe, count(*)
                       FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
                       GROUP BY 1"""
                ).fetchall()
            )

    daily, crypto = rows
    # 2025 and 2026 through yesterday: XNYS's own sessions, one official bar each.
    xnys = xcals.get_calendar("XNYS")
    sessions = len(xnys.sessions_in_range("2025-01-01", BENCH_TODAY - timedelta(days=1)))
    assert stored[f"{DAILY_SYMBOL} d1"] == sessions
    assert details["daily"]["sessions"] == sessions
    assert daily.metric.startswith(f"polygon requests, official d1 of {DAILY_SYMBOL} x 2 year")
    day_ranges = [p for p in served if p.startswith(f"/v2/aggs/ticker/{DAILY_SYMBOL}/range/1/day/")]
    assert (daily.measured, daily.reference, daily.met) == (len(day_ranges), 1, True)
    assert len(day_ranges) == 1

    # The three UTC days before today: every bucket the emulator has a minute in (buckets
    # anchored on 00:00 UTC, as epoch milliseconds are).
    days = [BENCH_TODAY - timedelta(days=n) for n in (3, 2, 1)]
    minutes = [int(t) for d in days for t in crypto_day(CRYPTO_PAIR, d).t]
    for timeframe, minutes_per_bar in (("m15", 15), ("h1", 60), ("h4", 240), ("d1", 1440)):
        buckets = len({t // (minutes_per_bar * 60_000) for t in minutes})
        assert stored[f"{CRYPTO_PAIR} {timeframe}"] == buckets, timeframe
    assert (details["crypto"]["first"], details["crypto"]["last"]) == tuple(map(str, days[::2]))
    pair_ranges = [p for p in served if p.startswith(f"/v2/aggs/ticker/{CRYPTO_PAIR}/")]
    assert (crypto.measured, crypto.reference, crypto.met) == (len(pair_ranges), 1, True)
    assert len(pair_ranges) == 1
