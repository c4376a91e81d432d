"""`d1_bars` (the history provider's official daily bar), `w1_bars` and `mo1_bars` (rolled up
from it), partitioned symbol x year.

Why years: 20 years of daily bars per symbol as symbol x session would be ~5,000 partitions
per symbol, far past Dagster's advice (at most 100,000 per asset) for any real watchlist. As
symbol x year, a symbol's 5-year daily backfill is 5 partitions in one single-run backfill:
one provider request (a daily range's `limit` counts days)."""

from contextlib import ExitStack
from datetime import date, timedelta

import dagster as dg
import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import CLOSE_TOLERANCE, official_vs_m15
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider, Timeframe
from swiftbolt_pipeline.core.resample import resample
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA, preview
from swiftbolt_pipeline.defs.resources import AlpacaResource, PolygonResource, WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest.daily import DailyTask, fetch_daily, roll_up
from swiftbolt_pipeline.names import D1_BARS, MO1_BARS, W1_BARS, years_by_symbol
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist

OFFICIAL_VS_M15 = "official_d1_vs_derived_from_m15"
DAILY_FETCH_COMPLETE = "daily_fetch_complete"

_PARTITIONING = (
    " Partitioned symbol x calendar year (from the daily depth's start, SWIFTBOLT_DAILY_YEARS "
    "= 5 by default, up to 20, through this year): a symbol's years backfill as one run, one "
    "request. Stored in `ohlc_bars_v2`."
)


def daily_sessions(pipeline: PipelineSettings, years: list[int]) -> list[date]:
    """The sessions of `years` within the daily depth that are over (a session's official
    daily bar exists once it has closed, so today's waits for tomorrow's refresh)."""
    first = max(date(years[0], 1, 1), pipeline.daily_start)
    last = min(date(years[-1], 12, 31), pipeline.today - timedelta(days=1))
    return calendar.sessions_between(first, last) if first <= last else []


def _plan(context: dg.AssetExecutionContext, pipeline: PipelineSettings) -> dict[str, list[date]]:
    plan = years_by_symbol(list(context.partition_keys))
    return {symbol: daily_sessions(pipeline, years) for symbol, years in plan.items()}


def check_official_vs_m15(
    conn: psycopg.Connection, plan: dict[str, list[date]], ids: dict[str, int]
) -> dg.AssetCheckResult:
    """Official d1 vs the d1 rolled up from the stored regular-session m15 bars, for every
    session of the run that has final m15 bars: close within CLOSE_TOLERANCE, high >= and low <= the
    regular session's, volume >= the regular session's."""
    bad: list[str] = []
    compared = 0
    for symbol, days in plan.items():
        if not days:
            continue
        m15 = _bars(conn, ids[symbol], Timeframe.M15, days)
        sessions = [calendar.session(d) for d in days]
        derived = resample(m15, Timeframe.D1, sessions)
        compared += derived.height
        d1 = _bars(conn, ids[symbol], Timeframe.D1, days)
        bad += [f"{symbol} {ts:%Y-%m-%d}" for ts in official_vs_m15(d1, derived)["ts"]]
    return dg.AssetCheckResult(
        check_name=OFFICIAL_VS_M15,
        asset_key=D1_BARS,
        passed=not bad,
        metadata={
            "sessions_compared": dg.MetadataValue.int(compared),
            "mismatched_sessions": dg.MetadataValue.int(len(bad)),
            "first_mismatches": dg.MetadataValue.text(", ".join(bad[:20])),
            "close_tolerance": dg.MetadataValue.float(CLOSE_TOLERANCE),
        },
    )


def _bars(
    conn: psycopg.Connection, symbol_id: int, timeframe: Timeframe, days: list[date]
) -> pl.DataFrame:
    stored = bar_store.read_bars(conn, symbol_id, timeframe, days[0], days[-1])
    # Provisional (today's provider) bars wait for their final ones before being compared.
    return stored.filter(~pl.col("is_intraday")).select(list(BAR_SCHEMA))


def build_daily_assets(partitions_def: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=D1_BARS,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bars",
        kinds={"polars", "postgres"},
        check_specs=[
            dg.AssetCheckSpec(
                OFFICIAL_VS_M15,
                asset=D1_BARS,
                description="Official d1 vs derived from m15: for every session with stored "
                f"regular-session m15 bars, close within {CLOSE_TOLERANCE:.0%} (the official "
                "close includes the post-market), high >= and low <= the regular session's, "
                "volume >= the regular session's.",
            ),
            dg.AssetCheckSpec(
                DAILY_FETCH_COMPLETE,
                asset=D1_BARS,
                description="Every symbol of the run got its daily bars; one that failed is "
                "named here (the others are stored).",
            ),
        ],
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description="One bar per session, `ts` = session open: the history provider's own daily "
        "aggregate (Polygon `/range/1/day/`, Alpaca `1Day`: the whole day's trades, extended "
        "hours and the closing auction included), never derived from m15." + _PARTITIONING,
    )
    def d1_bars(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        pipeline: PipelineSettings,
        polygon: PolygonResource,
        alpaca: AlpacaResource,
    ) -> dg.MaterializeResult:
        plan = _plan(context, pipeline)
        resources = {Provider.POLYGON: polygon, Provider.ALPACA: alpaca}
        providers = [Provider(p) for p in pipeline.history_providers]
        with warehouse.connect() as conn, ExitStack() as stack:
            ids = watchlist.ensure(conn, list(plan))
            conn.commit()
            tasks = [DailyTask(s, ids[s], days) for s, days in plan.items() if days]
            results = fetch_daily(
                conn,
                providers,
                lambda p: stack.enter_context(resources[p].daily_client()),
                tasks,
                run_id=context.run.run_id,
            )
            failures = {r.symbol: f"[{r.error.code}] {r.error}" for r in results if r.error}
            check = check_official_vs_m15(conn, plan, ids)
            symbol, days = next(iter(plan.items()))
            sample = preview(conn, symbol, ids[symbol], Timeframe.D1, days) if days else None
        metadata: dict[str, dg.MetadataValue] = {
            "rows": dg.MetadataValue.int(sum(r.bars_written for r in results)),
            "requests": dg.MetadataValue.int(sum(r.stats.requests for r in results)),
            "symbols": dg.MetadataValue.text(",".join(plan)),
            "sessions": dg.MetadataValue.int(sum(len(d) for d in plan.values())),
            "provider": dg.MetadataValue.text(
                ",".join(sorted({r.provider.value for r in results if r.provider}))
            ),
        }
        if sample is not None:
            metadata["preview"] = sample
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                check,
                dg.AssetCheckResult(
                    check_name=DAILY_FETCH_COMPLETE,
                    asset_key=D1_BARS,
                    passed=not failures,
                    metadata={"failures": dg.MetadataValue.json(failures)},
                ),
            ],
        )

    return [d1_bars, _rollup_asset(Timeframe.W1, partitions_def),
            _rollup_asset(Timeframe.MO1, partitions_def)]  # fmt: skip


_PERIODS = {
    Timeframe.W1: (W1_BARS, "One bar per exchange week (Monday-anchored week of NYSE sessions, "
                   "holidays skipped), `ts` = the week's first session open."),
    Timeframe.MO1: (MO1_BARS, "One bar per calendar month of NYSE sessions, `ts` = the month's "
                    "first session open."),
}  # fmt: skip


def _rollup_asset(
    timeframe: Timeframe, partitions_def: dg.MultiPartitionsDefinition
) -> dg.AssetsDefinition:
    name, what = _PERIODS[timeframe]

    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        deps=[D1_BARS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bars",
        kinds={"polars", "postgres"},
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description=f"{what} Rolled up from the stored official d1 bars (open first, close "
        "last, high max, low min, volume and trade_count summed, vwap volume-weighted), never "
        "fetched; a period whose first session has no d1 bar (before the daily depth, or in a "
        "year not fetched yet) is left out. A week straddling New Year is written by either "
        "year's run." + _PARTITIONING,
    )
    def rollup_bars(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        pipeline: PipelineSettings,
    ) -> dg.MaterializeResult:
        plan = _plan(context, pipeline)
        rows = 0
        with warehouse.connect() as conn:
            ids = watchlist.ensure(conn, list(plan))
            for symbol, days in plan.items():
                if days:
                    rows += roll_up(
                        conn,
                        symbol_id=ids[symbol],
                        days=days,
                        timeframe=timeframe,
                    )
        return dg.MaterializeResult(
            metadata={
                "rows": dg.MetadataValue.int(rows),
                "symbols": dg.MetadataValue.text(",".join(plan)),
                "timeframe": dg.MetadataValue.text(timeframe.value),
            }
        )

    return rollup_bars
