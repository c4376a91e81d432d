"""h1/h4 partitions derived from the stored m15 bars, never fetched."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.calendar import DayCalendar
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.resample import resample_many
from swiftbolt_pipeline.storage import bars as bar_store


def derive(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    days: Sequence[date],
    timeframe: Timeframe,
    cal: DayCalendar = calendar.NYSE,
) -> int:
    """Recompute `timeframe` bars of `days` from m15 and replace those partitions.

    Derived bars keep their source: a day fetched from Tradier today yields intraday h1 bars,
    replaced when the history provider's final m15 bars of that day are derived again.
    Returns rows written."""
    written = derive_many(conn, symbol_id=symbol_id, days=days, timeframes=[timeframe], cal=cal)
    return written[timeframe]


def derive_many(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    days: Sequence[date],
    timeframes: Sequence[Timeframe],
    cal: DayCalendar = calendar.NYSE,
) -> dict[Timeframe, int]:
    """`derive` for several timeframes from one read of the m15 bars (universe mode derives
    h1 and h4 of thousands of symbols). Rows written per timeframe. `cal`: the market's
    calendar (NYSE sessions, or crypto's UTC days, whose buckets anchor on UTC midnight)."""
    days = sorted(days)
    m15 = bar_store.read_bars(conn, symbol_id, Timeframe.M15, days[0], days[-1], cal.zone)
    m15 = m15.with_columns(
        pl.col("ts").dt.convert_time_zone(str(cal.zone)).dt.date().alias("day")
    ).filter(pl.col("day").is_in(days))
    sources = {
        row["day"]: (row["provider"], row["is_intraday"])
        for row in m15.group_by("day")
        .agg(pl.col("provider").first(), pl.col("is_intraday").any())
        .iter_rows(named=True)
    }
    groups: dict[tuple[str, bool], list[date]] = defaultdict(list)
    for day in days:
        # A day without m15 bars loses its derived bars too (written empty, source irrelevant).
        groups[sources.get(day, ("polygon", False))].append(day)
    written = dict.fromkeys(timeframes, 0)
    with conn.transaction():
        for (provider, is_intraday), group in groups.items():
            sessions = [cal.session(d) for d in group]
            source = m15.filter(pl.col("day").is_in(group)).select(list(BAR_SCHEMA))
            for timeframe, bars in resample_many(source, timeframes, sessions).items():
                written[timeframe] += bar_store.replace_partitions(
                    conn,
                    symbol_id=symbol_id,
                    timeframe=timeframe,
                    days=group,
                    bars=bars,
                    provider=provider,
                    is_intraday=is_intraday,
                    zone=cal.zone,
                )
    conn.commit()
    return written
