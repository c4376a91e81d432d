"""The asset job that sensors and schedules launch: all bar timeframes of a partition range."""

from datetime import date

import dagster as dg

from swiftbolt_pipeline.names import (
    BAR_ASSETS,
    DERIVED_ASSETS,
    RANGE_END_TAG,
    RANGE_START_TAG,
    partition_key,
)

BARS_JOB = "bars_job"
DERIVED_ASSET_KEYS = tuple(dg.AssetKey(name) for name in DERIVED_ASSETS)
BAR_ASSET_KEYS = tuple(dg.AssetKey(name) for name in BAR_ASSETS.values())

# Partitioning is inferred from the selected assets.
bars_job = dg.define_asset_job(
    BARS_JOB,
    selection=dg.AssetSelection.assets(*BAR_ASSET_KEYS),
    description="m15 bars from the providers, then h1/h4/d1 derived, for a partition range.",
)


def range_tags(
    first_symbol: str, last_symbol: str, first_day: date, last_day: date
) -> dict[str, str]:
    """Tags making one run cover the rectangle symbols x days (single-run backfill policy)."""
    return {
        RANGE_START_TAG: partition_key(first_symbol, first_day),
        RANGE_END_TAG: partition_key(last_symbol, last_day),
    }
