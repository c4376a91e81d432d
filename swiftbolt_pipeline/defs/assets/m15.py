"""`m15_bars`: raw 15-minute bars per symbol x session, from Polygon (history) and Tradier."""

from contextlib import ExitStack

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.clean import merge_counts
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA, preview
from swiftbolt_pipeline.defs.checks import check_m15, check_provider_data, m15_check_specs
from swiftbolt_pipeline.defs.partitions import days_by_symbol
from swiftbolt_pipeline.defs.resources import PolygonResource, TradierResource, WarehouseResource
from swiftbolt_pipeline.ingest.m15 import SymbolIngest, ingest_history
from swiftbolt_pipeline.ingest.today import ingest_today
from swiftbolt_pipeline.storage import watchlist


def build_m15_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="m15_bars",
        partitions_def=partitions_def,
        # A backfill of many days is one run, coalesced into few provider requests.
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="polygon",
        group_name="bars",
        kinds={"polygon", "postgres", "polars"},
        check_specs=m15_check_specs(),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description=(
            "Raw regular-session 15-minute OHLCV bars, one partition per symbol and NYSE "
            "session, stored in `ohlc_bars_v2` (timeframe m15). Historical sessions come from "
            "Polygon aggregates, requested in coalesced windows of about 50 sessions; today's "
            "session from Tradier time & sales (`is_intraday`), replaced by Polygon later."
        ),
    )
    def m15_bars(
        context: dg.AssetExecutionContext,
        polygon: PolygonResource,
        tradier: TradierResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        settings = Settings.from_env()
        now, today = settings.now(), settings.today
        plan = days_by_symbol(list(context.partition_keys))
        results: list[SymbolIngest] = []
        with warehouse.connect() as conn, ExitStack() as clients:
            ids = watchlist.ensure(conn, list(plan))
            for symbol, days in plan.items():
                # Routed by each day, not by the end of the range: history from Polygon,
                # today's session from Tradier.
                history = [d for d in days if d < today]
                context.log.info(f"{symbol}: {len(days)} session(s) {days[0]}..{days[-1]}")
                if history:
                    client = clients.enter_context(polygon.client())
                    results.append(
                        ingest_history(
                            conn,
                            client,
                            run_id=context.run.run_id,
                            symbol=symbol,
                            symbol_id=ids[symbol],
                            days=history,
                        )
                    )
                if today in days:
                    results.append(
                        ingest_today(
                            conn,
                            clients.enter_context(tradier.client()),
                            run_id=context.run.run_id,
                            symbol=symbol,
                            symbol_id=ids[symbol],
                            day=today,
                            now=now,
                        )
                    )
            rejected: dict[str, int] = {}
            for result in results:
                merge_counts(rejected, result.rejected)
            checks = [*check_m15(conn, plan, ids), check_provider_data(rejected)]
            symbol, days = next(iter(plan.items()))
            sample = preview(conn, symbol, ids[symbol], Timeframe.M15, days)
        return dg.MaterializeResult(
            metadata={**_metadata(results), "preview": sample}, check_results=checks
        )

    return m15_bars


def _metadata(results: list[SymbolIngest]) -> dict[str, dg.MetadataValue]:
    first = min((r.first_ts for r in results if r.first_ts), default=None)
    last = max((r.last_ts for r in results if r.last_ts), default=None)
    return {
        "rows": dg.MetadataValue.int(sum(r.bars_written for r in results)),
        "requests": dg.MetadataValue.int(sum(r.stats.requests for r in results)),
        "planned_requests": dg.MetadataValue.int(sum(r.expected_requests for r in results)),
        "retries": dg.MetadataValue.int(sum(r.stats.retries for r in results)),
        "token_wait_s": dg.MetadataValue.float(
            round(sum(r.stats.token_wait_s for r in results), 2)
        ),
        "provider": dg.MetadataValue.text(",".join(sorted({r.provider for r in results}))),
        "symbols": dg.MetadataValue.text(",".join(r.symbol for r in results)),
        "sessions": dg.MetadataValue.int(sum(len(r.days) for r in results)),
        "resumed_sessions": dg.MetadataValue.int(sum(r.resumed_days for r in results)),
        "empty_sessions": dg.MetadataValue.int(sum(len(r.empty_days) for r in results)),
        "rejected_bars": dg.MetadataValue.int(sum(r.rejected_total for r in results)),
        "extended_hours_dropped": dg.MetadataValue.int(
            sum(r.cleaning.counts.get("extended_hours", 0) for r in results)
        ),
        "first_bar": dg.MetadataValue.text(first or "-"),
        "last_bar": dg.MetadataValue.text(last or "-"),
    }
