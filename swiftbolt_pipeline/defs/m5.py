"""Automation of the opt-in 5-minute bars: `m5_gap_sensor` keeps the `m5_symbols` partitions
in step with the opted-in symbols and requests one backfill per symbol per contiguous range
of incomplete m5 sessions; `m5_today_schedule` refreshes today's m5 from Tradier while the
market is open. A past session's provisional m5 bars are replaced by the gap sensor once the
morning finalize is due (m15's rule), from the history provider."""

from datetime import timedelta

import dagster as dg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.defs.jobs import M5_JOB, m5_job
from swiftbolt_pipeline.defs.partitions import M5_SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.schedules import closed_for_today
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import (
    M5_BARS,
    M5_SYMBOLS_PARTITIONS,
    PRIORITY_TAG,
    SYMBOL_TAG,
    TRIGGER_TAG,
    range_tags,
)
from swiftbolt_pipeline.services.coverage import inflight_ranges
from swiftbolt_pipeline.services.launch import backfill_request
from swiftbolt_pipeline.services.m5 import incomplete_m5, m5_gaps
from swiftbolt_pipeline.storage import watchlist

MAX_REQUESTS_PER_TICK = 25


@dg.sensor(
    name="m5_gap_sensor",
    # Dagster submits a sensor's backfill requests only for assets of its own selection.
    asset_selection=m5_job.selection,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Opt-in 5-minute bars: the symbols opted in (`watch add SYM --m5`, or every watched "
        "stock with SWIFTBOLT_M5=1) become `m5_symbols` partitions (opted-out ones are "
        "removed, their bars kept), and each one's incomplete m5 sessions become one backfill "
        "(a single run, the m15 request windows) per contiguous range. Ranges in flight and "
        "symbols whose last fetch failed less than 10 minutes ago are left alone."
    ),
)
def m5_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, pipeline: PipelineSettings
) -> dg.SensorResult | dg.SkipReason:
    with warehouse.connect() as conn:
        opted = watchlist.m5_symbols(conn, everyone=pipeline.m5_all)
        incomplete = incomplete_m5(conn, opted, pipeline)
    known = set(context.instance.get_dynamic_partitions(M5_SYMBOLS_PARTITIONS))
    wanted = {s.ticker for s in opted}
    added, removed = sorted(wanted - known), sorted(known - wanted)
    partitions: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        partitions.append(M5_SYMBOLS.build_add_request(added))
    if removed:
        partitions.append(M5_SYMBOLS.build_delete_request(removed))
    gaps = m5_gaps(opted, incomplete, pipeline, inflight_ranges(context.instance))
    if not gaps and not partitions:
        return dg.SkipReason(f"{len(opted)} m5 symbol(s) complete, waiting or in flight")
    assert context.repository_def is not None  # the daemon evaluates sensors with defs
    requests = [
        backfill_request(
            context.repository_def.asset_graph,
            [dg.AssetKey(M5_BARS)],
            symbol=gap.symbol,
            first_day=gap.gap.start,
            last_day=gap.gap.end,
            tags={
                SYMBOL_TAG: gap.symbol,
                TRIGGER_TAG: "m5_gap_sensor",
                PRIORITY_TAG: str(gap.priority),
            },
        )
        for gap in gaps[:MAX_REQUESTS_PER_TICK]
    ]
    context.log.info(
        f"m5_symbols added: {added or '-'}; removed: {removed or '-'}; requesting "
        f"{len(requests)} of {len(gaps)} range(s): "
        + ", ".join(f"{g.symbol} {g.gap.start}..{g.gap.end}" for g in gaps[:5])
    )
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partitions)


@dg.schedule(
    name="m5_today_schedule",
    job_name=M5_JOB,
    cron_schedule="*/15 9-16 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's 5-minute bars of every m5 symbol from Tradier, every 15 minutes while "
    "NYSE is open.",
)
def m5_today_schedule(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineSettings
) -> dg.RunRequest | dg.SkipReason:
    now = pipeline.pinned_now() or context.scheduled_execution_time
    today = calendar.exchange_date(now)
    if (closed := closed_for_today(pipeline, now, first_bar=timedelta(minutes=5))) is not None:
        return closed
    symbols = list(context.instance.get_dynamic_partitions(M5_SYMBOLS_PARTITIONS))
    if not symbols:
        return dg.SkipReason("no symbol is opted in to m5")
    return dg.RunRequest(
        run_key=f"m5-today:{now.isoformat()}",
        tags={**range_tags(symbols[0], symbols[-1], today, today), TRIGGER_TAG: "m5_today"},
    )
