"""Which bars belong to which sessions: the regular-session filter used before storing m15."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ, Session


def bars_in_sessions(
    bars: pl.DataFrame, sessions: Sequence[Session], *, extended_hours: bool = False
) -> pl.DataFrame:
    """Bars that start inside one of `sessions`: regular hours [open, close), or the extended
    04:00-20:00 ET day when `extended_hours`. Anything else the provider sent is dropped."""
    if not sessions or bars.is_empty():
        return bars.clear()
    bounds = pl.DataFrame(
        {
            "day": [s.day for s in sessions],
            "lo": [s.extended_open if extended_hours else s.open for s in sessions],
            "hi": [s.extended_close if extended_hours else s.close for s in sessions],
        },
        schema={"day": pl.Date, "lo": bars.schema["ts"], "hi": bars.schema["ts"]},
    )
    day = pl.col("ts").dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date().alias("day")
    return (
        bars.with_columns(day)
        .join(bounds, on="day", how="inner")
        .filter((pl.col("ts") >= pl.col("lo")) & (pl.col("ts") < pl.col("hi")))
        .drop("day", "lo", "hi")
        .sort("ts")
    )
