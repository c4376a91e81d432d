"""Automation of the daily assets (symbol x year): a sensor backfilling the years a watched
symbol lacks, and a schedule refreshing the latest session's year every morning."""

from datetime import date

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Provider, Timeframe, is_crypto
from swiftbolt_pipeline.core.planning import symbol_span
from swiftbolt_pipeline.defs.jobs import DAILY_ASSET_KEYS, DAILY_JOB, daily_job
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import (
    D1_BARS,
    PRIORITY_TAG,
    SYMBOL_TAG,
    TRIGGER_TAG,
    year_range_tags,
)
from swiftbolt_pipeline.providers.registry import history_batch_size
from swiftbolt_pipeline.services.daily import (
    DailyBatch,
    batch_daily_gaps,
    daily_gaps,
    daily_inflight,
    year_key,
)
from swiftbolt_pipeline.services.launch import daily_backfill_request, symbol_tags
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist

MAX_REQUESTS_PER_TICK = 25


@dg.sensor(
    name="daily_gap_sensor",
    asset_selection=daily_job.selection,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Per watched symbol, the years of the daily depth (SWIFTBOLT_DAILY_YEARS) with "
    "a past session lacking its official d1 bar and no successful d1 materialization: one "
    "backfill (a single run, one provider request) per symbol per contiguous range of years, "
    "or, when Alpaca serves history, one run per up to 50 neighbouring symbols sharing those "
    "years (they share its requests); d1 then w1/mo1. Years in flight are left alone; a "
    "session the provider has no bar for is no gap once its year was fetched.",
)
def daily_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, pipeline: PipelineSettings
) -> dg.SensorResult | dg.SkipReason:
    today, start = pipeline.today, pipeline.daily_start
    with warehouse.connect() as conn:
        # Crypto pairs derive their d1 from m15 on their own assets (`defs/crypto.py`).
        watched = [
            s
            for s in watchlist.list_symbols(conn)
            if s.retry_after is None and not is_crypto(s.ticker)
        ]
        if not watched:
            return dg.SkipReason("no watched symbol to fetch daily bars for")
        stored = bar_store.sessions_with_bars_many(
            conn, [s.id for s in watched], Timeframe.D1, start, today
        )
    materialized: dict[str, list[int]] = {}
    for key in context.instance.get_materialized_partitions(dg.AssetKey(D1_BARS)):
        if (found := year_key(key)) is not None:
            materialized.setdefault(found[0], []).append(found[1])
    gaps = daily_gaps(
        [(s.ticker, s.priority) for s in watched],
        {s.ticker: stored[s.id].keys() for s in watched},
        materialized,
        daily_inflight(context.instance),
        daily_start=start,
        today=today,
    )
    if not gaps:
        return dg.SkipReason(f"{len(watched)} symbol(s) have their daily years or wait for them")
    assert context.repository_def is not None
    assert SYMBOLS.name is not None
    order = list(context.instance.get_dynamic_partitions(SYMBOLS.name))
    size = history_batch_size(Provider(pipeline.history_providers[0]))
    requests = [
        _request(context.repository_def.asset_graph, batch)
        # A new symbol waits for its partition (watchlist sensor): it has no place in `order`.
        for batch in batch_daily_gaps(gaps, order, size)[:MAX_REQUESTS_PER_TICK]
    ]
    if not requests:
        return dg.SkipReason("the symbols lacking daily years are not partitions yet")
    context.log.info(", ".join(f"{g.symbol} {g.first_year}..{g.last_year}" for g in gaps[:10]))
    return dg.SensorResult(run_requests=requests)


def _request(asset_graph: BaseAssetGraph, batch: DailyBatch) -> dg.RunRequest:
    """One symbol's years: a backfill (listed on the Backfills page). A batch of neighbours
    sharing the provider's requests (Alpaca): one plain run over the rectangle, since the
    backfill daemon would split it into one run per symbol."""
    tags = {TRIGGER_TAG: "daily_gap_sensor", PRIORITY_TAG: str(batch.priority)}
    if len(batch.symbols) == 1:
        return daily_backfill_request(
            asset_graph,
            DAILY_ASSET_KEYS,
            symbol=batch.symbols[0],
            first_year=batch.first_year,
            last_year=batch.last_year,
            tags={**tags, SYMBOL_TAG: batch.symbols[0]},
        )
    return dg.RunRequest(
        asset_selection=list(DAILY_ASSET_KEYS),
        tags={
            **tags,
            **year_range_tags(
                batch.symbols[0], batch.symbols[-1], batch.first_year, batch.last_year
            ),
            **symbol_tags(batch.symbols),
        },
    )


@dg.schedule(
    name="refresh_daily_schedule",
    job_name=DAILY_JOB,
    cron_schedule="0 6 * * 1-6",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning with the finalize of the previous session: the official d1 of "
    "that session's year for every watched symbol (one request per symbol), then its w1 and "
    "mo1 rolled up again.",
)
def refresh_daily_schedule(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineSettings
) -> dg.RunRequest | dg.SkipReason:
    now = pipeline.pinned_now() or context.scheduled_execution_time
    previous: date = calendar.previous_session(calendar.exchange_date(now))
    assert SYMBOLS.name is not None
    order = list(context.instance.get_dynamic_partitions(SYMBOLS.name))
    if not order:
        return dg.SkipReason("the watchlist is empty")
    first, last = symbol_span(order, order)
    return dg.RunRequest(
        run_key=f"daily:{previous.isoformat()}",
        tags={
            **year_range_tags(first, last, previous.year, previous.year),
            TRIGGER_TAG: "refresh_daily",
        },
    )
