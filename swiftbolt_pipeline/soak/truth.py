"""The emulator's truth, computed independently of the pipeline (no Dagster, no resample).

The source is the emulator's own base bars (`BarStore.day_bars`, deterministic per ticker and
day) with the plan's facts applied here: a symbol's lifecycle (no bars outside its life, none
on a halted session) and split adjustment (prices / ratio, volume x ratio before the execution
day, as Polygon's `adjusted=true` serves them). Then, with our own polars code:

* m15: regular-session base bars in clock-aligned 15-minute buckets (open first, high max, low
  min, close last, volume and trade count summed, vwap volume-weighted; prices to 4 decimals);
* h1: buckets anchored at the open (09:30, 10:30, ... 15:30 ET), h4: 09:30-13:30 and
  13:30-close; each from the m15 truth.

The official daily bars (d1, w1, mo1: symbol x year partitions, their own sensor) are not part
of the soak's session-by-session audit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from swiftbolt_pipeline.emulator import sessions as emu_sessions
from swiftbolt_pipeline.emulator.data import BarStore, is_listed

TIMEFRAMES = ("m15", "h1", "h4")
_WIDTH_MIN = {"h1": 60, "h4": 240}
_MS_MIN = 60_000
COLUMNS = ["day", "ts_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count"]


@dataclass(frozen=True)
class Facts:
    """What the plan made true for one ticker."""

    listed_from: date | None = None
    delisted_after: date | None = None
    halted: frozenset[date] = frozenset()
    split_day: date | None = None
    split_ratio: float = 1.0

    def trades_on(self, ticker: str, day: date) -> bool:
        if not is_listed(ticker) or day in self.halted:
            return False
        if self.listed_from is not None and day < self.listed_from:
            return False
        return self.delisted_after is None or day <= self.delisted_after


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "day": pl.Date,
            "ts_ms": pl.Int64,
            **{c: pl.Float64 for c in ("open", "high", "low", "close")},
            "volume": pl.Int64,
            "vwap": pl.Float64,
            "trade_count": pl.Int64,
        }
    )


def _base_frame(store: BarStore, ticker: str, day: date, facts: Facts) -> pl.DataFrame:
    s = emu_sessions.session(day)
    if s is None or not facts.trades_on(ticker, day):
        return pl.DataFrame()
    b = store.day_bars(ticker, s)
    frame = pl.DataFrame(
        {"t": b.t, "o": b.o, "h": b.h, "l": b.l, "c": b.c, "v": b.v, "vw": b.vw, "n": b.n}
    ).filter((pl.col("t") >= s.open_ms) & (pl.col("t") < s.close_ms))
    if facts.split_day is not None and day < facts.split_day:
        r = facts.split_ratio
        frame = frame.with_columns(
            *(pl.col(c) / r for c in ("o", "h", "l", "c", "vw")),
            pl.max_horizontal(pl.lit(1), (pl.col("v") * r).round(0)).cast(pl.Int64).alias("v"),
        )
    return frame.with_columns(pl.lit(s.open_ms).alias("open_ms"))


def m15_truth(store: BarStore, ticker: str, day: date, facts: Facts) -> pl.DataFrame:
    base = _base_frame(store, ticker, day, facts)
    if base.is_empty():
        return _empty()
    width = 15 * _MS_MIN
    out = (
        base.with_columns(((pl.col("t") // width) * width).alias("ts_ms"))
        .group_by("ts_ms", maintain_order=True)
        .agg(
            pl.col("o").first().alias("open"),
            pl.col("h").max().alias("high"),
            pl.col("l").min().alias("low"),
            pl.col("c").last().alias("close"),
            pl.col("v").sum().alias("volume"),
            (pl.col("v") * pl.col("vw")).sum().alias("pv"),
            pl.col("n").sum().alias("trade_count"),
        )
        .with_columns(
            (pl.col("pv") / pl.max_horizontal(pl.col("volume"), pl.lit(1))).round(4).alias("vwap")
        )
        .with_columns(
            pl.col("vwap").clip(pl.col("low"), pl.col("high")),
        )
        .with_columns(*(pl.col(c).round(4) for c in ("open", "high", "low", "close", "vwap")))
    )
    return out.with_columns(pl.lit(day).alias("day")).select(COLUMNS).sort("ts_ms")


def derived_truth(m15: pl.DataFrame, timeframe: str, day: date) -> pl.DataFrame:
    """h1/h4 of one session from its m15 truth, buckets anchored at the session open."""
    s = emu_sessions.session(day)
    if m15.is_empty() or s is None:
        return _empty()
    width = _WIDTH_MIN[timeframe] * _MS_MIN
    return (
        m15.with_columns(
            (s.open_ms + ((pl.col("ts_ms") - s.open_ms) // width) * width).alias("bucket")
        )
        .group_by("bucket", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).alias("vwap"),
            pl.col("trade_count").sum(),
        )
        .rename({"bucket": "ts_ms"})
        .with_columns(pl.lit(day).alias("day"))
        .select(COLUMNS)
        .sort("ts_ms")
    )


def session_truth(
    store: BarStore, ticker: str, days: Iterable[date], facts: Facts
) -> dict[str, pl.DataFrame]:
    """Per timeframe, the true bars of `ticker` on `days` (empty frame: no bars)."""
    parts: dict[str, list[pl.DataFrame]] = {tf: [] for tf in TIMEFRAMES}
    for day in days:
        m15 = m15_truth(store, ticker, day, facts)
        parts["m15"].append(m15)
        for tf in ("h1", "h4"):
            parts[tf].append(derived_truth(m15, tf, day))
    return {tf: pl.concat(p) if p else _empty() for tf, p in parts.items()}


def base_minutes(store: BarStore, ticker: str, days: Iterable[date], facts: Facts) -> int:
    """Base minute aggregates Polygon counts against `limit` for these sessions (extended
    hours included): the unit of the request floor."""
    total = 0
    for day in days:
        s = emu_sessions.session(day)
        if s is not None and facts.trades_on(ticker, day):
            total += int(np.sum(store.day_bars(ticker, s).span))
    return total


def m15_aggregates(store: BarStore, ticker: str, days: Iterable[date], facts: Facts) -> int:
    """15-minute aggregates (extended hours included) Polygon pages through for these days."""
    total = 0
    for day in days:
        s = emu_sessions.session(day)
        if s is not None and facts.trades_on(ticker, day):
            t = store.day_bars(ticker, s).t
            total += len(np.unique(t // (15 * _MS_MIN)))
    return total
