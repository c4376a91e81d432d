"""The asset job that sensors and schedules launch: all bar timeframes of a partition range."""

import dagster as dg

from swiftbolt_pipeline.names import DAILY_ASSETS, DERIVED_ASSETS, M5_BARS, SESSION_ASSETS

BARS_JOB = "bars_job"
DERIVED_ASSET_KEYS = tuple(dg.AssetKey(name) for name in DERIVED_ASSETS)
BAR_ASSET_KEYS = tuple(dg.AssetKey(name) for name in SESSION_ASSETS)
DAILY_JOB = "daily_job"
DAILY_ASSET_KEYS = tuple(dg.AssetKey(name) for name in DAILY_ASSETS)

# Partitioning is inferred from the selected assets.
bars_job = dg.define_asset_job(
    BARS_JOB,
    selection=dg.AssetSelection.assets(*BAR_ASSET_KEYS),
    description="m15 bars from the providers, then h1/h4 derived, for a partition range.",
)

# Symbol x year partitions: a job of its own (a job's assets share one partitioning).
daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS),
    description="Official d1 bars from the history provider, then w1/mo1 rolled up, per year.",
)

# Opted-in symbols' 5-minute bars (`m5_symbols` x sessions): a partitioning of their own.
M5_JOB = "m5_job"
m5_job = dg.define_asset_job(
    M5_JOB,
    selection=dg.AssetSelection.assets(M5_BARS),
    description="5-minute bars of the symbols opted in to m5, for a partition range.",
)
