"""`h1_bars`, `h4_bars`: session-anchored bars derived from `m15_bars` (d1 is the provider's
own daily bar: `defs/assets/daily.py`)."""

import dagster as dg

from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Timeframe
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA, preview
from swiftbolt_pipeline.defs.checks import check_derived, derived_check_specs
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.ingest.derive import derive
from swiftbolt_pipeline.names import BAR_ASSETS, M15_BARS, days_by_symbol
from swiftbolt_pipeline.storage import watchlist

_DESCRIPTIONS = {
    Timeframe.H1: "Hourly bars anchored at the open: 09:30, 10:30, ... 15:30 ET (the last one "
    "30 minutes); 7 per full session, 4 on an early close.",
    Timeframe.H4: "Four-hour bars 09:30-13:30 and 13:30-close ET; 2 per full session, 1 on an "
    "early close.",
}


def build_derived_asset(
    timeframe: Timeframe, partitions_def: dg.MultiPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=BAR_ASSETS[timeframe],
        partitions_def=partitions_def,
        deps=[M15_BARS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bars",
        kinds={"polars", "postgres"},
        check_specs=derived_check_specs(BAR_ASSETS[timeframe]),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description=(
            f"{_DESCRIPTIONS[timeframe]} Derived with polars from the stored m15 bars of the "
            "regular session (open=first, close=last, high=max, low=min, volume and "
            "trade_count summed, vwap volume-weighted); stored in `ohlc_bars_v2`."
        ),
    )
    def derived_bars(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        plan = days_by_symbol(list(context.partition_keys))
        rows = 0
        with warehouse.connect() as conn:
            ids = watchlist.ensure(conn, list(plan))
            for symbol, days in plan.items():
                rows += derive(conn, symbol_id=ids[symbol], days=days, timeframe=timeframe)
            checks = check_derived(conn, timeframe, plan, ids)
            symbol, days = next(iter(plan.items()))
            sample = preview(conn, symbol, ids[symbol], timeframe, days)
        return dg.MaterializeResult(
            check_results=checks,
            metadata={
                "rows": dg.MetadataValue.int(rows),
                "symbols": dg.MetadataValue.text(",".join(plan)),
                "sessions": dg.MetadataValue.int(sum(len(d) for d in plan.values())),
                "timeframe": dg.MetadataValue.text(timeframe.value),
                "preview": sample,
            },
        )

    return derived_bars


def build_derived_assets(
    partitions_def: dg.MultiPartitionsDefinition,
) -> list[dg.AssetsDefinition]:
    return [build_derived_asset(tf, partitions_def) for tf in DERIVED_TIMEFRAMES]
