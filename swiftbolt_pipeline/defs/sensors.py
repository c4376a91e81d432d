"""Sensors: the watchlist becomes partitions; coverage gaps become a few range backfills."""

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.gaps import window_sessions
from swiftbolt_pipeline.defs.jobs import BARS_JOB, DERIVED_ASSET_KEYS, range_tags
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.names import PRIORITY_TAG, SYMBOL_TAG, TRIGGER_TAG
from swiftbolt_pipeline.services.coverage import (
    GapRequest,
    gaps_to_request,
    inflight_ranges,
    reap_dead_runs,
)
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.coverage import session_states

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
        parked = watchlist.parked(conn)
    assert SYMBOLS.name is not None
    known = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    added, removed = sorted(active - known), sorted(known - active)
    if not added and not removed:
        # Parked symbols are named on every tick, so the UI's tick history shows them and why.
        note = "; ".join(f"{s.ticker} parked: {s.parked_reason}" for s in parked)
        return dg.SkipReason(f"{len(active)} symbol partition(s) up to date. {note}".strip())
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
        "Finds incomplete sessions of watched symbols, per timeframe (raw bars the history "
        "provider has not confirmed, provisional bars of past sessions, missing or stale "
        "derived bars) and requests one run per symbol per contiguous range, never per day: "
        "a fetch where raw bars are missing, a derive-only run (no request) where only h1/h4/d1 "
        "are. Ranges already queued or running, and symbols whose last fetch failed less "
        "than 10 minutes ago, are left alone."
    ),
)
def coverage_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    settings = Settings.from_env()
    assert SYMBOLS.name is not None
    partitions = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    with warehouse.connect() as conn:
        reaped = reap_dead_runs(context.instance, conn)
        watched = watchlist.list_symbols(conn)
        if not watched:
            return dg.SkipReason("the watchlist is empty")
        widest = max(s.window_days for s in watched)
        sessions = window_sessions(settings.today, widest, settings.history_start)
        states = session_states(conn, [s.id for s in watched], sessions)
    if reaped:
        context.log.warning(f"runs of dead workers marked failed: {', '.join(reaped)}")
    gaps = gaps_to_request(watched, states, settings, inflight_ranges(context.instance))
    if not gaps:
        return dg.SkipReason(f"{len(watched)} symbol(s) complete, waiting or in flight")
    # A symbol added a moment ago may not be a partition yet: add it in this same tick, so a
    # new symbol's backfill starts without waiting for the watchlist sensor.
    new_symbols = sorted({g.symbol for g in gaps} - partitions)
    requests = [_run_request(g) for g in gaps[:MAX_REQUESTS_PER_TICK]]
    context.log.info(
        f"requesting {len(requests)} of {len(gaps)} range(s): "
        + ", ".join(
            f"{g.symbol} {g.gap.start}..{g.gap.end}{'' if g.fetch else ' (derive)'}"
            for g in gaps[:5]
        )
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[SYMBOLS.build_add_request(new_symbols)] if new_symbols else [],
    )


def _run_request(gap: GapRequest) -> dg.RunRequest:
    return dg.RunRequest(
        asset_selection=None if gap.fetch else list(DERIVED_ASSET_KEYS),
        tags={
            **range_tags(gap.symbol, gap.symbol, gap.gap.start, gap.gap.end),
            SYMBOL_TAG: gap.symbol,
            TRIGGER_TAG: "coverage_gap_sensor",
            PRIORITY_TAG: str(gap.priority),
        },
    )
