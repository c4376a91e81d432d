"""`symbol` x `day` partitions. Day keys are XNYS session dates only:
weekends and holidays are never partitions."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar

SYMBOLS = dg.DynamicPartitionsDefinition(name="symbols")


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
    return dg.MultiPartitionsDefinition({"symbol": SYMBOLS, "day": day_partitions(settings)})


def partition_key(symbol: str, day: date) -> str:
    """The multi-partition key; Dagster joins dimensions in name order: `day|symbol`."""
    return dg.MultiPartitionKey({"symbol": symbol, "day": day.isoformat()})


def days_by_symbol(keys: list[str]) -> dict[str, list[date]]:
    """Group a run's partition keys by symbol, days in order."""
    grouped: dict[str, list[date]] = defaultdict(list)
    for key in keys:
        day, symbol = key.split("|")
        grouped[symbol].append(date.fromisoformat(day))
    return {symbol: sorted(days) for symbol, days in sorted(grouped.items())}
