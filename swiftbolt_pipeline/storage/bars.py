"""Reading and writing `ohlc_bars_v2`.

A write replaces whole partitions (symbol x session day x timeframe) in one transaction, with a
bulk COPY. An advisory lock per (symbol, timeframe) serializes concurrent writers, so two
backfills racing over the same days end with every bar exactly once.

A partition's day is a calendar date in a market's zone: America/New_York for NYSE sessions
(the default), UTC for crypto days (`zone=core.crypto_calendar.ZONE`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import psycopg

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.storage import bar_copy

_LOCK_NAMESPACE = 0x5B01_0BA2

_COPY = bar_copy.copy_statement("ohlc_bars_v2")


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
    payload = bar_copy.copy_payload(
        bars, symbol_id=symbol_id, timeframe=timeframe.value, provider=provider,
        is_intraday=is_intraday,
    )  # fmt: skip
    with conn.transaction():
        # One round trip for the transaction's settings (set_config(..., true) is SET LOCAL)
        # and the lock. Safe to skip the WAL flush wait: a crash can only lose whole recent
        # transactions (bars together with their checkpoint), which a resumed fetch simply
        # writes again. Recounting hundreds of sessions (the delete trigger) is estimated dear
        # enough to be JIT-compiled, which costs tens of ms more than the index-range work it
        # speeds up.
        conn.execute(
            """SELECT set_config('synchronous_commit', 'off', true),
                      set_config('jit', 'off', true),
                      pg_advisory_xact_lock(%s, hashtext(%s))""",
            (_LOCK_NAMESPACE, f"{symbol_id}:{timeframe.value}"),
        )
        # One statement for every run of days, so its delete trigger recounts all the touched
        # sessions at once (a weekend splits the runs every week). The sorted run bounds
        # lo1 < hi1 < lo2 < ... are buckets for width_bucket (a binary search): a bar lies in
        # a run exactly when it falls in an odd bucket.
        bounds = [
            edge
            for first, last in _day_runs(sorted(day_set))
            for edge in (day_bounds(first, zone)[0], day_bounds(last, zone)[1])
        ]
        if bounds:
            conn.execute(
                """DELETE FROM ohlc_bars_v2
                   WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s
                     AND width_bucket(ts, %s::timestamptz[]) %% 2 = 1""",
                (symbol_id, timeframe.value, bounds[0], bounds[-1], bounds),
            )
        if bars.height:
            with conn.cursor().copy(_COPY) as copy:
                copy.write(payload)
    return bars.height


def _day_runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive calendar days merged into runs, one bucket of the DELETE per run."""
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
    # One row of column arrays in binary, viewed by numpy in place: a universe member's m15
    # history is ~30k bars, and a Python object per value (a plain SELECT) or per row (COPY)
    # cost several times the query. Nullable columns travel as value and null flag, so every
    # array element has a fixed width; provider, a word from a short list, as one string.
    row = conn.execute(
        """SELECT array_send(array_agg(ts)), array_send(array_agg(open)),
                  array_send(array_agg(high)), array_send(array_agg(low)),
                  array_send(array_agg(close)), array_send(array_agg(volume)),
                  array_send(array_agg(coalesce(vwap, 0))), array_send(array_agg(vwap IS NULL)),
                  array_send(array_agg(coalesce(trade_count, 0))),
                  array_send(array_agg(trade_count IS NULL)),
                  string_agg(provider, ','), array_send(array_agg(is_intraday))
           FROM ohlc_bars_v2
           WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s""",
        (symbol_id, timeframe.value, lo, hi),
        binary=True,
    ).fetchone()
    if row is None or row[0] is None:
        return pl.DataFrame(schema=SOURCE_SCHEMA)
    ts, open_, high, low, close, volume, vwap, no_vwap, trades, no_trades, provider, intraday = row
    frame = pl.DataFrame(
        {
            "ts": _array(ts, ">i8") + bar_copy.PG_EPOCH_US,
            "open": _array(open_, ">f8"),
            "high": _array(high, ">f8"),
            "low": _array(low, ">f8"),
            "close": _array(close, ">f8"),
            "volume": _array(volume, ">i8"),
            "vwap": _array(vwap, ">f8"),
            "trade_count": _array(trades, ">i8"),
            "provider": pl.Series([provider]).str.split(",").explode(),
            "is_intraday": _array(intraday, "?"),
            "no_vwap": _array(no_vwap, "?"),
            "no_trades": _array(no_trades, "?"),
        }
    )
    # The arrays share one row order (one aggregation pass); sorting makes it ts order.
    return (
        frame.with_columns(
            pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            pl.when(~pl.col("no_vwap")).then(pl.col("vwap")).alias("vwap"),
            pl.when(~pl.col("no_trades")).then(pl.col("trade_count")).alias("trade_count"),
        )
        .select(list(SOURCE_SCHEMA))
        .sort("ts")
        .cast(pl.Schema(SOURCE_SCHEMA))
    )


def _array(data: bytes, element: str) -> np.ndarray:
    """The elements of a one-dimensional binary array without nulls, each `element` wide.

    Layout: dimension count, null flag, element type, then length and lower bound per
    dimension; then every element as its byte length followed by its bytes."""
    header = np.frombuffer(data, dtype=">i4", count=5)
    if header[0] != 1 or header[1] != 0:
        raise ValueError("expected a one-dimensional array without nulls")
    dtype = np.dtype(element)
    elements = np.frombuffer(data, dtype=np.dtype([("size", ">i4"), ("value", dtype)]), offset=20)
    if elements.size != header[3] or (elements["size"] != dtype.itemsize).any():
        raise ValueError(f"array elements are not {dtype.itemsize} bytes wide")
    return elements["value"]


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
           WHERE symbol_id = ANY(%s::int[]) AND timeframe = %s AND ts >= %s AND ts < %s
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
