"""Crypto pairs' bar assets, partitioned `crypto_symbols` x UTC day (every day, no holidays):
`crypto_m15_bars` from the history providers, `crypto_h1_bars`, `crypto_h4_bars` and
`crypto_d1_bars` derived from it on buckets anchored on 00:00 UTC. Stock sessions and crypto
days never share an asset or a partition."""

from contextlib import ExitStack
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from swiftbolt_pipeline.core import crypto_calendar, quality
from swiftbolt_pipeline.core.crypto_calendar import CRYPTO
from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider, Timeframe
from swiftbolt_pipeline.defs.assets.m15 import PlanConfig, history_providers
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA
from swiftbolt_pipeline.defs.checks import (
    BAR_COUNTS,
    CONSISTENT,
    FETCH_COMPLETE,
    NO_DUPLICATES,
    OHLC_SANE,
    check_derived,
)
from swiftbolt_pipeline.defs.resources import (
    AlpacaResource,
    PolygonResource,
    WarehouseResource,
)
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest.crypto import ingest_crypto
from swiftbolt_pipeline.ingest.derive import derive
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.names import CRYPTO_BAR_ASSETS, CRYPTO_M15_BARS, days_by_symbol
from swiftbolt_pipeline.providers.crypto import CryptoHistory
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist

# As for stocks: a failed pair is left alone this long before the gap sensor retries it.
FAILURE_COOLDOWN = timedelta(minutes=10)
# A past UTC day with fewer m15 bars than this is reported (warning): a liquid pair trades in
# every 15-minute slot, a thin one may not, so a short day is worth a look, never an error.
THIN_DAY_BARS = crypto_calendar.SLOTS_PER_DAY // 2


def crypto_m15_check_specs() -> list[dg.AssetCheckSpec]:
    asset = CRYPTO_M15_BARS
    return [
        dg.AssetCheckSpec(BAR_COUNTS, asset=asset, description="Bars per UTC day vs the 24/7 "
                          f"calendar: at most 96, on the 15-minute grid; a past day with fewer "
                          f"than {THIN_DAY_BARS} is reported (warning: a slot without trades has "
                          "no bar)."),
        dg.AssetCheckSpec(OHLC_SANE, asset=asset,
                          description="low <= open, close <= high and volume >= 0."),
        dg.AssetCheckSpec(NO_DUPLICATES, asset=asset,
                          description="One bar per timestamp per pair."),
        dg.AssetCheckSpec(FETCH_COMPLETE, asset=asset, description="Every pair of the run "
                          "was fetched; a failed one is named and retried by the gap sensor."),
    ]  # fmt: skip


def crypto_derived_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(BAR_COUNTS, asset=asset, description="Buckets per UTC day vs the "
                          "24/7 calendar (24 h1, 6 h4, 1 d1), anchored on 00:00 UTC; buckets "
                          "without m15 bars are reported, extra or off-grid ones fail."),
        dg.AssetCheckSpec(CONSISTENT, asset=asset, description="Every bar equals a fresh "
                          "resample of the stored m15 bars (first/last, extremes, sums)."),
    ]  # fmt: skip


def _stored(conn: psycopg.Connection, symbol_id: int, days: list[date]) -> pl.DataFrame:
    bars = bar_store.read_bars(conn, symbol_id, Timeframe.M15, days[0], days[-1], CRYPTO.zone)
    return bars.filter(pl.col("ts").dt.date().is_in(days)).select(list(BAR_SCHEMA))


def check_crypto_m15(
    conn: psycopg.Connection, plan: dict[str, list[date]], ids: dict[str, int], today: date
) -> list[dg.AssetCheckResult]:
    """The stored m15 bars of the run's days against the 24/7 calendar."""
    excess = off_grid = thin = bad_ohlc = duplicates = stored = 0
    examples: dict[str, int] = {}
    for symbol, days in plan.items():
        bars = _stored(conn, ids[symbol], days)
        report = quality.check_counts(
            bars, [CRYPTO.session(d) for d in days], Timeframe.M15, CRYPTO.zone
        )
        stored += report.stored
        excess += len(report.excess_days)
        off_grid += report.off_grid + report.outside_session
        short = {
            d: crypto_calendar.SLOTS_PER_DAY - n
            for d, n in report.short_days.items()
            if d < today and crypto_calendar.SLOTS_PER_DAY - n < THIN_DAY_BARS
        }
        thin += len(short)
        examples.update({f"{symbol} {d}": n for d, n in list(short.items())[:5]})
        bad_ohlc += quality.ohlc_violations(bars).height
        duplicates += quality.duplicate_timestamps(bars)
    passed = not excess and not off_grid
    return [
        dg.AssetCheckResult(
            asset_key=CRYPTO_M15_BARS,
            check_name=BAR_COUNTS,
            passed=passed and not thin,
            severity=dg.AssetCheckSeverity.WARN if passed else dg.AssetCheckSeverity.ERROR,
            metadata={
                "stored_bars": stored,
                "days_with_extra_bars": excess,
                "off_grid_bars": off_grid,
                "thin_days": thin,
                "thin_day_examples": dg.MetadataValue.json(dict(list(examples.items())[:10])),
            },
        ),
        dg.AssetCheckResult(
            asset_key=CRYPTO_M15_BARS, check_name=OHLC_SANE, passed=bad_ohlc == 0,
            metadata={"violations": bad_ohlc},
        ),
        dg.AssetCheckResult(
            asset_key=CRYPTO_M15_BARS, check_name=NO_DUPLICATES, passed=duplicates == 0,
            metadata={"duplicates": duplicates},
        ),
    ]  # fmt: skip


def crypto_run_config(provider: str) -> dict[str, Any]:
    """Run config forcing `provider` for a run that materializes `crypto_m15_bars`."""
    return {"ops": {CRYPTO_M15_BARS: {"config": PlanConfig(provider=provider).model_dump()}}}


def build_crypto_m15_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=CRYPTO_M15_BARS,
        partitions_def=partitions_def,
        # A backfill of many days is one run, coalesced into few provider requests.
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="crypto",
        kinds={"polygon", "postgres", "polars"},
        check_specs=crypto_m15_check_specs(),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        pool="polygon",
        description=(
            "Raw 15-minute OHLCV bars of crypto pairs (`X:` tickers such as X:BTCUSD), one "
            "partition per pair and UTC day (24/7: weekends and holidays included, 96 slots a "
            "day), stored in `ohlc_bars_v2` (timeframe m15). Every day, today's included, "
            "comes from the history providers (SWIFTBOLT_HISTORY_PROVIDERS: Polygon crypto "
            "aggregates, Alpaca crypto bars as fallback) on the same token buckets and circuit "
            "breakers as stocks, in requests of up to 34 days. Tradier serves no crypto, so "
            "today's UTC day is fetched from the history provider too and stored provisional "
            "(`is_intraday`) until the day is over, then fetched again as final."
        ),
    )
    def crypto_m15_bars(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        polygon: PolygonResource,
        alpaca: AlpacaResource,
        pipeline: PipelineSettings,
        config: PlanConfig,
    ) -> dg.MaterializeResult:
        plan = days_by_symbol(list(context.partition_keys))
        providers = history_providers(config, pipeline)
        resources = {Provider.POLYGON: polygon, Provider.ALPACA: alpaca}
        now = pipeline.now()
        with warehouse.connect() as conn, ExitStack() as stack:
            clients: dict[Provider, CryptoHistory] = {}

            def open_client(provider: Provider) -> CryptoHistory:
                if provider not in clients:
                    resource = resources.get(provider)
                    if resource is None:
                        raise ProviderError(
                            PROVIDER_UNAVAILABLE, f"{provider} serves no crypto bars",
                            provider=provider,
                        )  # fmt: skip
                    clients[provider] = stack.enter_context(resource.crypto_client())
                return clients[provider]

            ids = watchlist.ensure(conn, list(plan))
            results = []
            for symbol, days in plan.items():
                context.log.info(f"{symbol}: {len(days)} UTC day(s) {days[0]}..{days[-1]}")
                results.append(
                    ingest_crypto(
                        conn, open_client, providers, run_id=context.run.run_id, symbol=symbol,
                        symbol_id=ids[symbol], days=days, now=now,
                    )
                )  # fmt: skip
            _record_outcomes(context, conn, results, ids, pipeline)
            errors = [r.error for r in results if r.error]
            if errors and len(errors) == len(results):
                raise errors[0]
            failures = {r.symbol: f"[{r.error.code}] {r.error.message}" for r in results if r.error}
            checks = [
                *check_crypto_m15(conn, plan, ids, crypto_calendar.utc_date(now)),
                dg.AssetCheckResult(
                    asset_key=CRYPTO_M15_BARS, check_name=FETCH_COMPLETE, passed=not failures,
                    metadata={"failures": dg.MetadataValue.json(failures)},
                ),
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
                "days": dg.MetadataValue.int(sum(len(d) for d in plan.values())),
                "first_bar": dg.MetadataValue.text(
                    min((r.first_ts for r in results if r.first_ts), default="-")
                ),
                "last_bar": dg.MetadataValue.text(
                    max((r.last_ts for r in results if r.last_ts), default="-")
                ),
            },
        )

    return crypto_m15_bars


def _record_outcomes(
    context: dg.AssetExecutionContext,
    conn: psycopg.Connection,
    results: list[SymbolIngest],
    ids: dict[str, int],
    pipeline: PipelineSettings,
) -> None:
    """Per pair: clear or note its failure (the gap sensor waits FAILURE_COOLDOWN), and park a
    pair that keeps answering SYMBOL_NOT_FOUND."""
    now = pipeline.now()
    with conn.transaction():
        for result in results:
            error = result.error
            reason = watchlist.record_outcome(
                conn, ids[result.symbol], error_code=error.code if error else None,
                error_message=error.message if error else "", now=now,
                retry_after=now + FAILURE_COOLDOWN,
            )  # fmt: skip
            if error:
                context.log.warning(f"{result.symbol} failed: [{error.code}] {error.message}")
            if reason:
                context.log.warning(f"{result.symbol} parked: {reason}")
    conn.commit()


_DESCRIPTIONS = {
    Timeframe.H1: "Hourly bars of crypto pairs on every UTC hour: 24 per UTC day.",
    Timeframe.H4: "Four-hour bars of crypto pairs at 00:00, 04:00, ..., 20:00 UTC: 6 per day.",
    Timeframe.D1: "One bar per UTC day of crypto pairs, `ts` = 00:00 UTC.",
}


def build_crypto_derived_asset(
    timeframe: Timeframe, partitions_def: dg.MultiPartitionsDefinition
) -> dg.AssetsDefinition:
    name = CRYPTO_BAR_ASSETS[timeframe]

    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        deps=[CRYPTO_M15_BARS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="crypto",
        kinds={"polars", "postgres"},
        check_specs=crypto_derived_check_specs(name),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description=(
            f"{_DESCRIPTIONS[timeframe]} Derived with polars from the stored m15 bars "
            "(open=first, close=last, high=max, low=min, volume and trade_count summed, vwap "
            "volume-weighted), buckets anchored on 00:00 UTC; stored in `ohlc_bars_v2`."
        ),
    )
    def crypto_derived_bars(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        plan = days_by_symbol(list(context.partition_keys))
        rows = 0
        with warehouse.connect() as conn:
            ids = watchlist.ensure(conn, list(plan))
            for symbol, days in plan.items():
                rows += derive(
                    conn, symbol_id=ids[symbol], days=days, timeframe=timeframe, cal=CRYPTO
                )
            checks = check_derived(conn, timeframe, plan, ids, asset=name, cal=CRYPTO)
        return dg.MaterializeResult(
            check_results=checks,
            metadata={
                "rows": dg.MetadataValue.int(rows),
                "symbols": dg.MetadataValue.text(",".join(plan)),
                "days": dg.MetadataValue.int(sum(len(d) for d in plan.values())),
                "timeframe": dg.MetadataValue.text(timeframe.value),
            },
        )

    return crypto_derived_bars


def build_crypto_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [
        build_crypto_m15_asset(partitions_def),
        *(
            build_crypto_derived_asset(tf, partitions_def)
            for tf in crypto_calendar.DERIVED_TIMEFRAMES
        ),
    ]
