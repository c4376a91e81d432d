"""Row 1's request counts for the official daily bars and for crypto pairs: one backfill each,
the way `swiftbolt backfill` runs it (one in-process run per symbol over its whole range),
requests counted by the emulator, each against a floor computed here from the providers'
published limits, not from the pipeline's planner."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from swiftbolt_pipeline.core import calendar, crypto_calendar
from swiftbolt_pipeline.names import (
    CRYPTO_BAR_ASSETS,
    CRYPTO_SYMBOLS_PARTITIONS,
    DAILY_ASSETS,
)
from swiftbolt_pipeline.services.launch import (
    RunOutcome,
    materialize_range,
    materialize_years,
    register_symbols,
)
from swiftbolt_pipeline.storage import ledger, watchlist

from .env import BenchEnv
from .report import Row

DAILY_SYMBOL = "SPY"
CRYPTO_PAIR = "X:BTCUSD"
# Polygon's `limit` (at most 50,000) counts base aggregates: days on a day range, minutes on a
# minute range. A crypto pair can trade in every minute of its 96 fifteen-minute slots a day.
POLYGON_LIMIT = 50_000
CRYPTO_BASE_MINUTES_PER_DAY = 96 * 15


def daily_floor(sessions: int) -> int:
    """The least requests for one symbol's `sessions` official daily bars."""
    return max(1, math.ceil(sessions / POLYGON_LIMIT))


def crypto_floor(days: int) -> int:
    """The least requests for one pair's m15 bars over `days` whole UTC days."""
    return max(1, math.ceil(days * CRYPTO_BASE_MINUTES_PER_DAY / POLYGON_LIMIT))


def measure_daily_crypto_requests(
    env: BenchEnv, daily_years: int, crypto_days: int
) -> tuple[list[Row], dict[str, Any]]:
    """SPY's last `daily_years` year partitions of d1 (+ w1/mo1), and X:BTCUSD's last
    `crypto_days` UTC days of m15 (+ h1/h4/d1)."""
    daily_row, daily = _daily(env, daily_years)
    crypto_row, crypto = _crypto(env, crypto_days)
    return [daily_row, crypto_row], {"daily": daily, "crypto": crypto}


def _counted(env: BenchEnv, launch: Callable[[], RunOutcome]) -> tuple[int, ledger.CostSummary]:
    """(requests the emulator served during the run, the run's ledger totals)."""
    before, _ = env.emulator_counts()
    outcome = launch()
    after, _ = env.emulator_counts()
    if not outcome.success:
        raise RuntimeError(f"backfill of {', '.join(outcome.symbols)} failed: {outcome.error}")
    with env.connect() as conn:
        cost = ledger.run_cost(conn, [outcome.run_id])
    return after - before, cost


def _daily(env: BenchEnv, years_wanted: int) -> tuple[Row, dict[str, Any]]:
    today = env.settings.today
    first_year = max(env.settings.daily_start.year, today.year - years_wanted + 1)
    years = list(range(first_year, today.year + 1))
    first = max(date(first_year, 1, 1), env.settings.daily_start)
    sessions = len(calendar.sessions_between(first, today - timedelta(days=1)))
    with env.connect() as conn:
        watchlist.ensure(conn, [DAILY_SYMBOL])
        conn.commit()
    register_symbols(env.instance, [DAILY_SYMBOL])
    requests, cost = _counted(
        env,
        lambda: materialize_years(
            env.instance,
            env.assets,
            env.resources,
            symbols=[DAILY_SYMBOL],
            years=years,
            selection=list(DAILY_ASSETS),
            log_level="ERROR",
        ),
    )
    floor = daily_floor(sessions)
    row = Row(
        section="1",
        metric=(
            f"polygon requests, official d1 of {DAILY_SYMBOL} x {len(years)} year partitions "
            f"({sessions} sessions) + w1/mo1"
        ),
        measured=requests,
        unit="req",
        reference=floor,
        reference_label="req floor",
        target="<= 2",
        met=requests <= 2,
        note=(
            f"One run of d1_bars, w1_bars and mo1_bars over {years[0]}..{years[-1]} (the "
            f"daily depth from {first}). Counted by the emulator; the ledger says "
            f"{cost.actual_cost} made, {cost.expected_cost} planned, {cost.rows_written} d1 "
            f"bars written. Floor = ceil(sessions / 50,000): Polygon's `limit` counts days on "
            "a day range; w1/mo1 are rolled up from stored d1 and cost no request."
        ),
    )
    details = {"years": years, "sessions": sessions, "requests": requests, "floor": floor,
               "ledger_requests": cost.actual_cost, "planned": cost.expected_cost,
               "rows_written": cost.rows_written}  # fmt: skip
    return row, details


def _crypto(env: BenchEnv, count: int) -> tuple[Row, dict[str, Any]]:
    # Whole UTC days that are over, ending yesterday (UTC), inside the history window.
    yesterday = crypto_calendar.utc_date(env.settings.now()) - timedelta(days=1)
    first = max(yesterday - timedelta(days=count - 1), env.settings.history_start)
    days = [first + timedelta(days=n) for n in range((yesterday - first).days + 1)]
    with env.connect() as conn:
        watchlist.ensure(conn, [CRYPTO_PAIR])
        conn.commit()
    register_symbols(env.instance, [CRYPTO_PAIR], CRYPTO_SYMBOLS_PARTITIONS)
    requests, cost = _counted(
        env,
        lambda: materialize_range(
            env.instance,
            env.assets,
            env.resources,
            symbols=[CRYPTO_PAIR],
            days=days,
            selection=list(CRYPTO_BAR_ASSETS.values()),
            log_level="ERROR",
        ),
    )
    floor = crypto_floor(len(days))
    row = Row(
        section="1",
        metric=f"polygon requests, crypto {CRYPTO_PAIR} x {len(days)} UTC days (m15 + h1/h4/d1)",
        measured=requests,
        unit="req",
        reference=floor,
        reference_label="req floor",
        target="<= floor + 1",
        met=requests <= floor + 1,
        note=(
            f"One run of the four crypto assets over {days[0]}..{days[-1]}. Counted by the "
            f"emulator; the ledger says {cost.actual_cost} made, {cost.expected_cost} planned, "
            f"{cost.rows_written} m15 bars written. Floor = ceil(days x 96 slots x 15 base "
            "minutes / 50,000): a pair may trade in every minute of the day; h1/h4/d1 are "
            "derived from stored m15 and cost no request."
        ),
    )
    details = {"days": len(days), "first": str(days[0]), "last": str(days[-1]),
               "requests": requests, "floor": floor, "ledger_requests": cost.actual_cost,
               "planned": cost.expected_cost, "rows_written": cost.rows_written}  # fmt: skip
    return row, details
