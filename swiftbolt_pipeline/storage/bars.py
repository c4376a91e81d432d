"""Reading and writing `ohlc_bars_v2`.

A write replaces whole partitions (symbol x session day x timeframe) in one transaction, with a
bulk COPY. An advisory lock per (symbol, timeframe) serializes concurrent writers, so two
backfills racing over the same days end with every bar exactly once.

A partition's day is a calendar date in a market's zone: America/New_York for NYSE sessions
(the default), UTC for crypto days (`zone=core.crypto_calendar.ZONE`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import psycopg

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe

_LOCK_NAMESPACE = 0x5B01_0BA2


def day_bounds(day: date, zone: ZoneInfo = EXCHANGE_TZ) -> tuple[datetime, datetime]:
    """Midnight to midnight on the market's wall clock: every bar of that session day."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start, start + timedelta(days=1)


def _exchange_day(ts: pl.Expr, zone: ZoneInfo = EXCHANGE_TZ) -> pl.Expr:
    return ts.dt.convert_time_zone(str(zone)).dt.date()


def replace_partitions(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    timeframe: Timeframe,
    days: Sequence[date],
    bars: pl.DataFrame,
    provider: str,
    is_intraday: bool,
    zone: ZoneInfo = EXCHANGE_TZ,
) -> int:
    """Make `bars` the complete content of these partitions. Runs inside the caller's
    transaction when there is one (so a checkpoint can commit with the bars). Returns rows."""
    day_set = set(days)
    stray = bars.filter(~_exchange_day(pl.col("ts"), zone).is_in(list(day_set)))
    if stray.height:
        raise ValueError(f"{stray.height} bars fall outside the partitions being written")
    payload = bars.select(
        pl.lit(symbol_id).alias("symbol_id"),
        pl.lit(timeframe.value).alias("timeframe"),
        pl.col("ts"),
        *[pl.col(c) for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count")],
        pl.lit(provider).alias("provider"),
        pl.lit(is_intraday).alias("is_intraday"),
    )
    buffer = io.BytesIO()
    payload.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.f%z")
    with conn.transaction():
        # Safe to skip the WAL flush wait: a crash can only lose whole recent transactions
        # (bars together with their checkpoint), which a resumed fetch simply writes again.
        conn.execute("SET LOCAL synchronous_commit TO OFF")
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (_LOCK_NAMESPACE, f"{symbol_id}:{timeframe.value}"),
        )
        for first, last in _day_runs(sorted(day_set)):
            lo, _ = day_bounds(first, zone)
            _, hi = day_bounds(last, zone)
            conn.execute(
                """DELETE FROM ohlc_bars_v2
                   WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s""",
                (symbol_id, timeframe.value, lo, hi),
            )
        if payload.height:
            with conn.cursor().copy(
                """COPY ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close, volume,
                                      vwap, trade_count, provider, is_intraday)
                   FROM STDIN (FORMAT csv)"""
            ) as copy:
                copy.write(buffer.getvalue())
    return payload.height


def _day_runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive calendar days merged, so one DELETE covers a run of partitions."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days <= 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


SOURCE_SCHEMA: dict[str, pl.DataType] = {
    **BAR_SCHEMA,
    "provider": pl.String(),
    "is_intraday": pl.Boolean(),
}


def read_bars(
    conn: psycopg.Connection,
    symbol_id: int,
    timeframe: Timeframe,
    first: date,
    last: date,
    zone: ZoneInfo = EXCHANGE_TZ,
) -> pl.DataFrame:
    """Bars of the session days `first`..`last` (inclusive), ordered by ts, with their source
    (`provider`, `is_intraday`) after the BAR_SCHEMA columns."""
    lo, _ = day_bounds(first, zone)
    _, hi = day_bounds(last, zone)
    cur = conn.execute(
        """SELECT ts, open, high, low, close, volume, vwap, trade_count, provider, is_intraday
           FROM ohlc_bars_v2
           WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s ORDER BY ts""",
        (symbol_id, timeframe.value, lo, hi),
    )
    rows = cur.fetchall()
    return pl.DataFrame(rows, schema=SOURCE_SCHEMA, orient="row")


def has_final_bars(conn: psycopg.Connection, symbol_id: int, timeframe: Timeframe) -> bool:
    """Does the archive hold any final (not provisional) bar of this symbol?"""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM ohlc_bars_v2
                          WHERE symbol_id = %s AND timeframe = %s AND NOT is_intraday)""",
        (symbol_id, timeframe.value),
    ).fetchone()
    return bool(row and row[0])


def sessions_with_bars_many(
    conn: psycopg.Connection,
    symbol_ids: list[int],
    timeframe: Timeframe,
    first: date,
    last: date,
) -> dict[int, dict[date, int]]:
    """Per symbol id: bar count per exchange day that has bars, within `first`..`last`.

    One grouped query for the whole watchlist, cheap enough for a sensor tick."""
    lo, _ = day_bounds(first)
    _, hi = day_bounds(last)
    rows = conn.execute(
        """SELECT symbol_id, (ts AT TIME ZONE 'America/New_York')::date AS day, count(*)
           FROM ohlc_bars_v2
           WHERE symbol_id = ANY(%s) AND timeframe = %s AND ts >= %s AND ts < %s
           GROUP BY 1, 2""",
        (symbol_ids, timeframe.value, lo, hi),
    ).fetchall()
    result: dict[int, dict[date, int]] = {symbol_id: {} for symbol_id in symbol_ids}
    for symbol_id, day, count in rows:
        result[symbol_id][day] = count
    return result


def sessions_with_bars(
    conn: psycopg.Connection, symbol_id: int, timeframe: Timeframe, first: date, last: date
) -> dict[date, int]:
    """Bar count per exchange day that has bars, for one symbol."""
    return sessions_with_bars_many(conn, [symbol_id], timeframe, first, last)[symbol_id]
