"""Data-quality rules for stored bars (asset checks), as pure functions over polars frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ, Session
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.core.resample import BUCKET_MINUTES, resample


@dataclass(frozen=True)
class CountReport:
    """Bars per session against the calendar. Missing 15-minute intervals happen (no trades)
    and are reported, never filled; more bars than slots, or bars off the grid, are errors."""

    expected: int
    stored: int
    short_days: dict[date, int] = field(default_factory=dict)  # day -> missing bars
    excess_days: dict[date, int] = field(default_factory=dict)  # day -> extra bars
    off_grid: int = 0
    outside_session: int = 0

    @property
    def passed(self) -> bool:
        return not self.excess_days and not self.off_grid and not self.outside_session


def expected_bars(session: Session, timeframe: Timeframe) -> int:
    width = BUCKET_MINUTES[timeframe]
    return -(-session.regular_minutes // width)  # ceil: the last h1 bucket is 30 minutes


def _day(ts: pl.Expr, zone: ZoneInfo = EXCHANGE_TZ) -> pl.Expr:
    return ts.dt.convert_time_zone(str(zone)).dt.date()


def check_counts(
    bars: pl.DataFrame,
    sessions: Sequence[Session],
    timeframe: Timeframe,
    zone: ZoneInfo = EXCHANGE_TZ,
) -> CountReport:
    """`zone`: the zone whose calendar date is a bar's session day (UTC for crypto)."""
    opens = pl.DataFrame(
        {
            "day": [s.day for s in sessions],
            "open_at": [s.open for s in sessions],
            "close_at": [s.close for s in sessions],
        },
        schema={"day": pl.Date, "open_at": bars.schema["ts"], "close_at": bars.schema["ts"]},
    )
    width_us = BUCKET_MINUTES[timeframe] * 60_000_000
    per_bar = (
        bars.select("ts").with_columns(_day(pl.col("ts"), zone).alias("day")).join(opens, on="day")
    )
    off_grid = per_bar.filter(
        (pl.col("ts").dt.epoch("us") - pl.col("open_at").dt.epoch("us")) % width_us != 0
    ).height
    outside = per_bar.filter(
        (pl.col("ts") < pl.col("open_at")) | (pl.col("ts") >= pl.col("close_at"))
    ).height
    counts = dict(per_bar.group_by("day").len().iter_rows())
    expected = {s.day: expected_bars(s, timeframe) for s in sessions}
    return CountReport(
        expected=sum(expected.values()),
        stored=bars.height,
        short_days={d: n - counts.get(d, 0) for d, n in expected.items() if counts.get(d, 0) < n},
        excess_days={d: counts[d] - n for d, n in expected.items() if counts.get(d, 0) > n},
        off_grid=off_grid,
        outside_session=outside + bars.height - per_bar.height,
    )


def ohlc_violations(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars breaking low <= open, close <= high, or with negative volume."""
    return bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.col("high"))
        | (pl.col("volume") < 0)
    )


def duplicate_timestamps(bars: pl.DataFrame) -> int:
    return bars.height - bars["ts"].n_unique()


def derived_mismatches(
    m15: pl.DataFrame, derived: pl.DataFrame, timeframe: Timeframe, sessions: Sequence[Session]
) -> pl.DataFrame:
    """Buckets whose stored bar differs from a fresh resample of m15 (sums and extremes), or
    that exist on one side only."""
    fresh = resample(m15, timeframe, sessions)
    keys = ["ts", "open", "high", "low", "close", "volume", "trade_count"]
    joined = fresh.select(keys).join(
        derived.select(keys), on="ts", how="full", suffix="_stored", coalesce=True
    )
    differs = pl.lit(False)
    for column in keys[1:]:
        differs = differs | pl.col(column).ne_missing(pl.col(f"{column}_stored"))
    return joined.filter(differs)
