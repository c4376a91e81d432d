"""The real 5-minute bars shipped with the emulator, and an independent m15 computation from
them.

Written separately from the emulator's aggregation on purpose: tests compare the pipeline's
stored bars with this."""

from __future__ import annotations

import functools
from datetime import date

import polars as pl

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.emulator.data import REAL_BARS


@functools.cache
def five_minute_bars() -> pl.DataFrame:
    return pl.read_csv(REAL_BARS.read_bytes()).select(
        "ticker",
        pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").alias("ts"),
        "o",
        "h",
        "l",
        "c",
        pl.col("v").cast(pl.Int64),
    )


def regular_m15(ticker: str, first: date, last: date) -> pl.DataFrame:
    """Regular-session 15-minute bars (ts, open, high, low, close, volume) from the CSV."""
    bounds = pl.DataFrame(
        [
            {"day": s.day, "open_at": s.open, "close_at": s.close}
            for s in map(calendar.session, calendar.sessions_between(first, last))
        ],
        schema={
            "day": pl.Date,
            "open_at": pl.Datetime("us", "UTC"),
            "close_at": pl.Datetime("us", "UTC"),
        },
    )
    bars = (
        five_minute_bars()
        .filter(pl.col("ticker") == ticker)
        .with_columns(
            pl.col("ts").dt.convert_time_zone("America/New_York").dt.date().alias("day"),
            pl.col("ts").cast(pl.Datetime("us", "UTC")),
        )
        .join(bounds, on="day")
        .filter((pl.col("ts") >= pl.col("open_at")) & (pl.col("ts") < pl.col("close_at")))
    )
    return (
        bars.group_by(pl.col("ts").dt.truncate("15m"))
        .agg(
            pl.col("o").sort_by("ts").first().alias("open"),
            pl.col("h").max().alias("high"),
            pl.col("l").min().alias("low"),
            pl.col("c").sort_by("ts").last().alias("close"),
            pl.col("v").sum().alias("volume"),
        )
        .sort("ts")
    )


def regular_m5(ticker: str, first: date, last: date) -> pl.DataFrame:
    """Regular-session 5-minute bars (ts, open, high, low, close, volume): the CSV's own rows
    inside each session's open..close, nothing aggregated."""
    rows = five_minute_bars().filter(pl.col("ticker") == ticker)
    kept = []
    for s in map(calendar.session, calendar.sessions_between(first, last)):
        kept.append(rows.filter((pl.col("ts") >= s.open) & (pl.col("ts") < s.close)))
    return (
        pl.concat(kept)
        .select(
            pl.col("ts").cast(pl.Datetime("us", "UTC")),
            pl.col("o").cast(pl.Float64).alias("open"),
            pl.col("h").cast(pl.Float64).alias("high"),
            pl.col("l").cast(pl.Float64).alias("low"),
            pl.col("c").cast(pl.Float64).alias("close"),
            pl.col("v").alias("volume"),
        )
        .sort("ts")
    )
