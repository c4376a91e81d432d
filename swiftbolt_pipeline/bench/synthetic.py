"""Synthetic bars for the measurements that need no provider: deterministic, vectorised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from swiftbolt_pipeline.core.calendar import Session
from swiftbolt_pipeline.core.models import BAR_SCHEMA

SLOT_US = 15 * 60 * 1_000_000


def slot_starts(sessions: Sequence[Session], extended: bool = False) -> np.ndarray:
    """Every m15 slot start (epoch us) of the sessions: regular hours, or 04:00-20:00 ET."""
    starts = []
    for s in sessions:
        lo, hi = (s.extended_open, s.extended_close) if extended else (s.open, s.close)
        n = int((hi - lo).total_seconds()) // 900
        starts.append(round(lo.timestamp() * 1e6) + np.arange(n, dtype=np.int64) * SLOT_US)
    return np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)


def m15_bars(
    sessions: Sequence[Session], symbols: Sequence[str], extended: bool = False, seed: int = 0
) -> pl.DataFrame:
    """A `symbol` column then BAR_SCHEMA: one bar per slot per symbol, sorted by (symbol, ts)."""
    ts = slot_starts(sessions, extended)
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in symbols:
        price = 100 + rng.standard_normal(ts.size).cumsum() * 0.1
        frames.append(
            pl.DataFrame(
                {
                    "symbol": symbol,
                    "ts": ts,
                    "open": price,
                    "high": price + 0.5,
                    "low": price - 0.5,
                    "close": price + 0.1,
                    "volume": rng.integers(0, 100_000, ts.size),
                    "vwap": price,
                    "trade_count": rng.integers(0, 1_000, ts.size),
                }
            )
        )
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.String(), **BAR_SCHEMA})
    return (
        pl.concat(frames)
        .with_columns(pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        .cast({"symbol": pl.String(), **BAR_SCHEMA})
    )
