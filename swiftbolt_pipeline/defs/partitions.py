"""`symbol` x `day` partitions. Day keys are XNYS session dates only: weekends and holidays
are never partitions. Opt-in m5 bars: `m5_symbols` x `day`. Crypto pairs have their own:
`crypto_symbols` x every UTC day."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar, crypto_calendar
from swiftbolt_pipeline.names import (
    CRYPTO_SYMBOLS_PARTITIONS,
    DAY_DIMENSION,
    M5_SYMBOLS_PARTITIONS,
    SYMBOL_DIMENSION,
    SYMBOLS_PARTITIONS,
    UNIVERSE_DIMENSION,
    UNIVERSES_PARTITIONS,
    YEAR_DIMENSION,
)

SYMBOLS = dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS)


def day_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Sessions from the history start through today (exchange time).

    Weekends are excluded by cron and holidays/closures by date, so time-window features (ranges,
    the UI's partition picker, schedules) keep working. With SWIFTBOLT_NOW the last partition is
    pinned to that day; otherwise today's partition appears as the day starts."""
    start = settings.history_start
    horizon = settings.today + timedelta(days=366)
    holidays = [
        datetime(d.year, d.month, d.day) for d in calendar.closed_weekdays_between(start, horizon)
    ]
    pinned_end = settings.today + timedelta(days=1) if settings.fixed_now else None
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        end_date=pinned_end.isoformat() if pinned_end else None,
        end_offset=0 if pinned_end else 1,
        timezone=str(calendar.EXCHANGE_TZ),
        exclusions=["0 0 * * 6,0", *holidays],
    )


def bar_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {SYMBOL_DIMENSION: SYMBOLS, DAY_DIMENSION: day_partitions(settings)}
    )


M5_SYMBOLS = dg.DynamicPartitionsDefinition(name=M5_SYMBOLS_PARTITIONS)


def m5_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Opted-in symbols x sessions: m5 adds partitions only for the symbols that want it."""
    return dg.MultiPartitionsDefinition(
        {SYMBOL_DIMENSION: M5_SYMBOLS, DAY_DIMENSION: day_partitions(settings)}
    )


def year_partitions(settings: Settings) -> dg.StaticPartitionsDefinition:
    """Calendar years from the daily depth's start (SWIFTBOLT_DAILY_YEARS) through this year:
    symbol x year keeps 20 years of daily bars at 20 partitions per symbol, where symbol x
    session would be ~5,000 (Dagster advises at most 100,000 partitions per asset)."""
    years = range(settings.daily_start.year, settings.today.year + 1)
    return dg.StaticPartitionsDefinition([str(y) for y in years])


def daily_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {SYMBOL_DIMENSION: SYMBOLS, YEAR_DIMENSION: year_partitions(settings)}
    )


UNIVERSES = dg.DynamicPartitionsDefinition(name=UNIVERSES_PARTITIONS)


def universe_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Universe x session: Dagster's bookkeeping grows with days, not with members x days."""
    return dg.MultiPartitionsDefinition(
        {UNIVERSE_DIMENSION: UNIVERSES, DAY_DIMENSION: day_partitions(settings)}
    )


CRYPTO_SYMBOLS = dg.DynamicPartitionsDefinition(name=CRYPTO_SYMBOLS_PARTITIONS)


def crypto_day_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Every UTC day from the history start through today (UTC): crypto trades 24/7, so there
    are no exclusions. With SWIFTBOLT_NOW the last partition is pinned to that UTC day."""
    today = crypto_calendar.utc_date(settings.now())
    pinned_end = today + timedelta(days=1) if settings.fixed_now else None
    return dg.DailyPartitionsDefinition(
        start_date=settings.history_start.isoformat(),
        end_date=pinned_end.isoformat() if pinned_end else None,
        end_offset=0 if pinned_end else 1,
        timezone="UTC",
    )


def crypto_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {SYMBOL_DIMENSION: CRYPTO_SYMBOLS, DAY_DIMENSION: crypto_day_partitions(settings)}
    )
