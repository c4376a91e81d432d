"""`m5_bars`: the opt-in 5-minute bars, partitioned `m5_symbols` x session (only the symbols
opted in, so the others add no partition). One step: the history providers in order (the
m15 request windows, fallback on outage), then today's session from Tradier."""

from contextlib import ExitStack
from typing import Any

import dagster as dg

from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.defs.assets.m15 import PlanConfig, history_providers, record_outcomes
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA
from swiftbolt_pipeline.defs.checks import (
    BAR_COUNTS,
    FETCH_COMPLETE,
    NO_DUPLICATES,
    OHLC_SANE,
    check_fetch_complete,
    check_m15,
)
from swiftbolt_pipeline.defs.resources import (
    AlpacaResource,
    PolygonResource,
    TradierResource,
    WarehouseResource,
)
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest.m5 import ingest_m5
from swiftbolt_pipeline.names import M5_BARS, days_by_symbol
from swiftbolt_pipeline.providers.registry import HistoryProvider, TodayProvider
from swiftbolt_pipeline.storage import watchlist


def m5_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(BAR_COUNTS, asset=M5_BARS, description="Bars per session vs the "
                          "NYSE calendar: 78 on a full day, 42 on an early close; empty "
                          "intervals are reported (warning), extra or off-grid bars fail."),
        dg.AssetCheckSpec(OHLC_SANE, asset=M5_BARS,
                          description="low <= open, close <= high and volume >= 0."),
        dg.AssetCheckSpec(NO_DUPLICATES, asset=M5_BARS,
                          description="One bar per timestamp per symbol."),
        dg.AssetCheckSpec(FETCH_COMPLETE, asset=M5_BARS, description="Every symbol of the "
                          "run was fetched; one that failed is named here and retried by the "
                          "m5 gap sensor."),
    ]  # fmt: skip


def m5_run_config(provider: str) -> dict[str, Any]:
    """Run config forcing `provider` for a run that materializes `m5_bars`."""
    return {"ops": {M5_BARS: {"config": PlanConfig(provider=provider).model_dump()}}}


def build_m5_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=M5_BARS,
        partitions_def=partitions_def,
        # A backfill of many days is one run, coalesced into the m15 request windows.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Its own group: an opt-in series on its own partitions, beside the `bars` lineage.
        group_name="m5",
        kinds={"polygon", "postgres", "polars"},
        check_specs=m5_check_specs(),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        # The history provider's pool: like m15's fetching steps, at most 2 fetch at once.
        pool="polygon",
        description=(
            "Raw regular-session 5-minute OHLCV bars, opt-in per symbol (`swiftbolt watch add "
            "SYM --m5`) or for every watched stock (SWIFTBOLT_M5=1): one partition per opted-in "
            "symbol and NYSE session, stored in `ohlc_bars_v2` (timeframe m5). Past sessions "
            "come from the history providers in the same request windows as m15 (Polygon's "
            "limit counts base minutes, so m5 costs the same requests; one symbol's window is "
            "one Alpaca page too), today's from Tradier's 5min time & sales (`is_intraday`). "
            "Nothing is derived from m5: h1/h4 come from m15."
        ),
    )
    def m5_bars(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        polygon: PolygonResource,
        alpaca: AlpacaResource,
        tradier: TradierResource,
        pipeline: PipelineSettings,
        config: PlanConfig,
    ) -> dg.MaterializeResult:
        plan = days_by_symbol(list(context.partition_keys))
        resources = {Provider.POLYGON: polygon, Provider.ALPACA: alpaca}
        with warehouse.connect() as conn, ExitStack() as stack:
            clients: dict[Provider, HistoryProvider] = {}

            def open_history(provider: Provider) -> HistoryProvider:
                if provider not in clients:
                    clients[provider] = stack.enter_context(resources[provider].history_client())
                return clients[provider]

            def open_today() -> TodayProvider | None:
                try:
                    return stack.enter_context(tradier.today_client())
                except ProviderError as exc:
                    if exc.code != PROVIDER_UNAVAILABLE:
                        raise
                    context.log.warning(f"today's m5 session skipped: {exc}")
                    return None

            ids = watchlist.ensure(conn, list(plan))
            results = ingest_m5(
                conn, open_history, open_today, history_providers(config, pipeline), plan=plan,
                ids=ids, today=pipeline.today, now=pipeline.now(), run_id=context.run.run_id,
                extended_hours=pipeline.extended_hours,
            )  # fmt: skip
            record_outcomes(context, conn, results, ids, pipeline)
            errors = [r.error for r in results if r.error]
            if errors and len(errors) == len(results):
                raise errors[0]
            failures = {r.symbol: f"[{r.error.code}] {r.error.message}" for r in results if r.error}
            checks = [
                *check_m15(
                    conn, plan, ids, extended_hours=pipeline.extended_hours,
                    timeframe=Timeframe.M5, asset=M5_BARS,
                ),
                check_fetch_complete(failures, asset=M5_BARS),
            ]  # fmt: skip
        return dg.MaterializeResult(
            check_results=checks,
            metadata={
                "rows": dg.MetadataValue.int(sum(r.bars_written for r in results)),
                "requests": dg.MetadataValue.int(sum(r.stats.requests for r in results)),
                "expected_cost": dg.MetadataValue.int(sum(r.expected_cost for r in results)),
                "provider": dg.MetadataValue.text(
                    ",".join(dict.fromkeys(p for r in results for p in r.providers)) or "-"
                ),
                "symbols": dg.MetadataValue.text(",".join(plan)),
                "sessions": dg.MetadataValue.int(sum(len(d) for d in plan.values())),
                "failed_symbols": dg.MetadataValue.text(",".join(failures) or "-"),
            },
        )

    return m5_bars
