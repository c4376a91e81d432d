"""Derive h1/h4/d1 bars from m15 bars, vectorised in polars.

Buckets are anchored on each session's open, not on the clock: h1 starts at 09:30, 10:30, ...
ET, so its last bucket on a full day is 15:30-16:00, and an early close simply ends the last
bucket sooner. Because the calendar gives every open in UTC, DST needs no special case here.

Shape of the computation (no Python loop over rows or days):
1. every bar is matched to the session of its UTC date by a hash join. A regular NYSE session
   (13:30-21:00 UTC at the widest) never crosses UTC midnight, so the UTC date of a
   regular-session bar is its session date; extended-hours bars that fall on another UTC date
   are dropped by the bounds check anyway;
2. bars outside `open <= ts < close` are dropped;
3. bucket start = open + floor((ts - open) / width) * width, in integer microseconds;
4. one `group_by` over the bucket start (and the optional `by` column) aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from swiftbolt_pipeline.core.calendar import Session
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe

_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 24 * 60 * _US_PER_MINUTE

# Bucket width per timeframe; d1 is wider than any session so every bar lands in bucket 0.
BUCKET_MINUTES: dict[Timeframe, int] = {
    Timeframe.M5: 5,
    Timeframe.M15: 15,
    Timeframe.H1: 60,
    Timeframe.H4: 240,
    Timeframe.D1: 24 * 60,
}

# Internal column names, prefixed so they cannot collide with a caller's `by` column.
_DAY, _OPEN, _CLOSE, _TS, _BUCKET = "__day", "__open", "__close", "__ts", "__bucket"


def _session_frame(sessions: Sequence[Session]) -> pl.DataFrame:
    """One row per distinct session: UTC day number, open and close in epoch microseconds."""
    by_day = {s.day: s for s in sessions}.values()
    # Session bounds are whole minutes, far inside float64's exact-integer range at 1e6 scale.
    frame = pl.DataFrame(
        {
            _OPEN: [round(s.open.timestamp() * 1e6) for s in by_day],
            _CLOSE: [round(s.close.timestamp() * 1e6) for s in by_day],
        },
        schema={_OPEN: pl.Int64, _CLOSE: pl.Int64},
    ).with_columns((pl.col(_OPEN) // _US_PER_DAY).alias(_DAY))
    if not frame.select(((pl.col(_CLOSE) - 1) // _US_PER_DAY == pl.col(_DAY)).all()).item():
        raise ValueError("a session crossing UTC midnight is not supported")
    if frame.get_column(_DAY).n_unique() != frame.height:
        raise ValueError("two sessions open on the same UTC date")
    return frame


def _in_session(frame: pl.DataFrame, sessions: Sequence[Session]) -> pl.DataFrame:
    """Attach `__ts`, `__open` (epoch us) to each regular-session bar; drop every other bar."""
    ts = pl.col("ts").dt.epoch("us")
    return (
        frame.with_columns(ts.alias(_TS), (ts // _US_PER_DAY).alias(_DAY))
        .join(_session_frame(sessions), on=_DAY, how="inner", maintain_order="left")
        .filter((pl.col(_TS) >= pl.col(_OPEN)) & (pl.col(_TS) < pl.col(_CLOSE)))
    )


def regular_session(bars: pl.DataFrame, sessions: Sequence[Session]) -> pl.DataFrame:
    """The bars starting in `open <= ts < close` of one of `sessions`, in input order.

    Bars of other days and extended-hours bars are dropped; columns are kept as given.
    """
    if bars.is_empty():
        return bars
    return _in_session(bars, sessions).select(bars.columns)


def resample(
    m15: pl.DataFrame,
    timeframe: Timeframe,
    sessions: Sequence[Session],
    by: str | None = None,
) -> pl.DataFrame:
    """Aggregate m15 bars into session-anchored `timeframe` bars (BAR_SCHEMA, sorted).

    `m15` may be in any order and span any number of sessions; only bars in the regular hours
    of `sessions` count, so pass the sessions you want derived. `ts` of a result is its bucket
    start; a bucket with no m15 bar yields no bar. `by` names an optional grouping column
    (e.g. `symbol`) so many symbols resample in one call; it is kept as the first output column
    and the output is sorted by (`by`, `ts`).

    Aggregation: first open and last close by `ts`, max high, min low, summed volume and
    trade_count (null when every trade_count in the bucket is null, as with Tradier bars), and
    vwap = volume-weighted mean of the non-null m15 vwaps (their plain mean when that volume is
    0; null when none is known). Bars are assumed unique per (`by`, `ts`).
    """
    return resample_many(m15, [timeframe], sessions, by)[Timeframe(timeframe)]


def resample_many(
    m15: pl.DataFrame,
    timeframes: Sequence[Timeframe],
    sessions: Sequence[Session],
    by: str | None = None,
) -> dict[Timeframe, pl.DataFrame]:
    """`resample` to each of `timeframes`, matching the bars to their sessions and sorting
    them once for all."""
    out_schema = dict(BAR_SCHEMA)
    if by is not None:
        out_schema = {by: m15.schema[by], **out_schema}
    if m15.is_empty() or not sessions:
        return {Timeframe(tf): pl.DataFrame(schema=out_schema) for tf in timeframes}
    # Sorting first makes every aggregate see its bars in time order: first/last are plain,
    # and float sums (vwap) come out bit-identical whatever order the input had.
    in_session = _in_session(
        m15.select([c for c in (by, *BAR_SCHEMA) if c is not None]), sessions
    ).sort([by, _TS] if by is not None else _TS)
    return {
        Timeframe(tf): _aggregate(in_session, Timeframe(tf), by, out_schema) for tf in timeframes
    }


def _aggregate(
    in_session: pl.DataFrame, timeframe: Timeframe, by: str | None, out_schema: dict
) -> pl.DataFrame:
    """One timeframe's bars from the sorted regular-session bars of `_in_session`."""
    width = BUCKET_MINUTES[timeframe] * _US_PER_MINUTE
    keys = [by, _BUCKET] if by is not None else [_BUCKET]
    vwap_known = pl.col("vwap").is_not_null()
    weight = pl.when(vwap_known).then(pl.col("volume")).otherwise(0)
    weight_sum = weight.sum()
    weighted_vwap = (pl.col("vwap") * weight).sum() / weight_sum
    result = (
        in_session.with_columns(
            (pl.col(_OPEN) + (pl.col(_TS) - pl.col(_OPEN)) // width * width).alias(_BUCKET)
        )
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.when(weight_sum > 0)
            .then(weighted_vwap)
            .otherwise(pl.col("vwap").mean())
            .alias("vwap"),
            pl.when(pl.col("trade_count").is_not_null().any())
            .then(pl.col("trade_count").sum())
            .alias("trade_count"),
        )
        .with_columns(
            pl.col(_BUCKET).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")
        )
        .select(list(out_schema))
    )
    return result.cast(pl.Schema(out_schema))
