"""Throughput of `resample` (not a test; pytest does not collect this file).

    .venv/bin/python swiftbolt_pipeline_tests/core/bench_resample.py [symbols]

Synthetic m15 bars for N symbols (default 10) over two years of XNYS sessions, first with
regular hours only, then with every 04:00-20:00 ET slot (extended bars are read and dropped).
"""

from __future__ import annotations

import sys
import time
import warnings
from datetime import date

import numpy as np
import polars as pl

from swiftbolt_pipeline.core.calendar import Session, session, sessions_between
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.resample import resample

SLOT_US = 15 * 60 * 1_000_000


def synthetic(sessions: list[Session], symbols: int, extended: bool) -> pl.DataFrame:
    starts = []
    for s in sessions:
        lo, hi = (s.extended_open, s.extended_close) if extended else (s.open, s.close)
        n = int((hi - lo).total_seconds()) // 900
        starts.append(round(lo.timestamp() * 1e6) + np.arange(n, dtype=np.int64) * SLOT_US)
    ts = np.concatenate(starts)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(symbols):
        price = 100 + rng.standard_normal(ts.size).cumsum() * 0.1
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{k:03d}",
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
    return pl.concat(frames).cast({"ts": pl.Datetime("us", "UTC")}).cast(dict(BAR_SCHEMA))


def best_of(
    frames: list[pl.DataFrame], timeframe: Timeframe, sessions: list[Session], by: str | None
) -> float:
    """Best of five runs (after a warm-up) of resampling every frame, in seconds."""
    timings = []
    for _ in range(6):
        start = time.perf_counter()
        for frame in frames:
            resample(frame, timeframe, sessions, by=by)
        timings.append(time.perf_counter() - start)
    return min(timings[1:])


def main() -> None:
    symbols = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        days = sessions_between(date(2024, 3, 1), date(2026, 2, 27))
    sessions = [session(d) for d in days]
    print(f"{symbols} symbols x {len(sessions)} sessions, polars {pl.__version__}")
    for extended in (False, True):
        bars = synthetic(sessions, symbols, extended)
        parts = [g.drop("symbol") for _, g in bars.group_by("symbol", maintain_order=True)]
        label = "04:00-20:00 ET" if extended else "regular only"
        for timeframe in (Timeframe.H1, Timeframe.H4, Timeframe.D1):
            one_call = best_of([bars], timeframe, sessions, "symbol")
            per_symbol = best_of(parts, timeframe, sessions, None)
            print(
                f"{label:>15} {timeframe.value}: {bars.height:>9,} m15 bars  "
                f"by='symbol' {bars.height / one_call / 1e6:5.1f} M/s ({one_call * 1e3:5.1f} ms)  "
                f"per symbol {bars.height / per_symbol / 1e6:5.1f} M/s"
            )


if __name__ == "__main__":
    main()
