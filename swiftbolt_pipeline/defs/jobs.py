"""The asset job that sensors and schedules launch: all bar timeframes of a partition range."""

import dagster as dg

from swiftbolt_pipeline.names import (
    BAR_ASSETS,
    DERIVED_ASSETS,
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
