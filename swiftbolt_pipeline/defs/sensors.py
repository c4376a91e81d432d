"""Sensors: the watchlist becomes partitions; coverage gaps become a few range backfills."""

from datetime import timedelta

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.coverage import gaps_to_request, inflight_ranges, recently_failed
from swiftbolt_pipeline.defs.jobs import BARS_JOB, range_tags
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist

# A failed range is retried after this long, so a dead symbol doesn't spin the queue.
FAILURE_COOLDOWN = timedelta(minutes=10)
MAX_REQUESTS_PER_TICK = 25


@dg.sensor(
    name="watchlist_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Active rows of `symbols` become dynamic `symbol` partitions (added and removed).",
)
def watchlist_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    with warehouse.connect() as conn:
        active = {row.ticker for row in watchlist.list_symbols(conn)}
    assert SYMBOLS.name is not None
    known = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    added, removed = sorted(active - known), sorted(known - active)
    if not added and not removed:
        return dg.SkipReason(f"{len(active)} symbol partition(s) up to date")
    requests = []
    if added:
        requests.append(SYMBOLS.build_add_request(added))
    if removed:
        requests.append(SYMBOLS.build_delete_request(removed))
    context.log.info(f"symbols added: {added or '-'}; removed: {removed or '-'}")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    name="coverage_gap_sensor",
    job_name=BARS_JOB,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds missing sessions of watched symbols (by their d1 bars, the last asset of the "
        "chain) and requests one run per symbol per contiguous range, never per day; ranges "
        "already queued, running or recently failed are left alone."
    ),
)
def coverage_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    settings = Settings.from_env()
    assert SYMBOLS.name is not None
    partitions = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    with warehouse.connect() as conn:
        watched = watchlist.list_symbols(conn)
        if not watched:
            return dg.SkipReason("the watchlist is empty")
        covered = bar_store.sessions_with_bars_many(
            conn,
            [s.id for s in watched],
            Timeframe.D1,
            settings.history_start,
            settings.today,
        )
    excluded = inflight_ranges(context.instance) + recently_failed(
        context.instance, settings.now() - FAILURE_COOLDOWN
    )
    gaps = gaps_to_request(
        [(s.ticker, s.id, s.window_days, s.priority) for s in watched],
        covered,
        settings,
        excluded,
    )
    if not gaps:
        return dg.SkipReason(f"{len(watched)} symbol(s) fully covered or in flight")
    # A symbol added a moment ago may not be a partition yet: add it in this same tick, so a
    # new symbol's backfill starts without waiting for the watchlist sensor.
    new_symbols = sorted({g.symbol for g in gaps} - partitions)
    requests = [
        dg.RunRequest(
            tags={
                **range_tags(g.symbol, g.symbol, g.gap.start, g.gap.end),
                "swiftbolt/symbol": g.symbol,
                "swiftbolt/trigger": "coverage_gap_sensor",
                "dagster/priority": str(g.priority),
            },
        )
        for g in gaps[:MAX_REQUESTS_PER_TICK]
    ]
    context.log.info(
        f"requesting {len(requests)} of {len(gaps)} gap range(s): "
        + ", ".join(f"{g.symbol} {g.gap.start}..{g.gap.end}" for g in gaps[:5])
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[SYMBOLS.build_add_request(new_symbols)] if new_symbols else [],
    )
