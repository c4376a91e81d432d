"""Sensors: the watchlist becomes partitions; coverage gaps become a few range backfills."""

import dagster as dg

from swiftbolt_pipeline.core.models import Provider, is_crypto
from swiftbolt_pipeline.defs.jobs import BAR_ASSET_KEYS, DERIVED_ASSET_KEYS, bars_job
from swiftbolt_pipeline.defs.partitions import CRYPTO_SYMBOLS, SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import PRIORITY_TAG, SYMBOL_TAG, TRIGGER_TAG
from swiftbolt_pipeline.providers.registry import history_batch_size
from swiftbolt_pipeline.services.coverage import (
    GapBatch,
    batch_gaps,
    gaps_to_request,
    incomplete_watchlist,
    inflight_ranges,
    reap_dead_runs,
)
from swiftbolt_pipeline.services.launch import backfill_request, batch_run_request
from swiftbolt_pipeline.storage import watchlist

MAX_REQUESTS_PER_TICK = 25


@dg.sensor(
    name="watchlist_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Active rows of `symbols` become dynamic partitions (added and removed): "
    "stocks in `symbols`, crypto pairs (`X:` tickers) in `crypto_symbols`.",
)
def watchlist_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    with warehouse.connect() as conn:
        active = {row.ticker for row in watchlist.list_symbols(conn)}
        parked = watchlist.parked(conn)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    changes = []
    for partitions, members in (
        (SYMBOLS, {t for t in active if not is_crypto(t)}),
        (CRYPTO_SYMBOLS, {t for t in active if is_crypto(t)}),
    ):
        assert partitions.name is not None
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        added, removed = sorted(members - known), sorted(known - members)
        if added:
            requests.append(partitions.build_add_request(added))
        if removed:
            requests.append(partitions.build_delete_request(removed))
        if added or removed:
            changes.append(f"{partitions.name} added: {added or '-'}; removed: {removed or '-'}")
    if not requests:
        # Parked symbols are named on every tick, so the UI's tick history shows them and why.
        note = "; ".join(f"{s.ticker} parked: {s.parked_reason}" for s in parked)
        return dg.SkipReason(f"{len(active)} symbol partition(s) up to date. {note}".strip())
    context.log.info("; ".join(changes))
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    name="coverage_gap_sensor",
    # An asset selection, not a job: Dagster submits a sensor's backfill requests only for
    # assets of the sensor's own selection.
    asset_selection=bars_job.selection,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds incomplete sessions of watched symbols, per timeframe (raw bars the history "
        "provider has not confirmed, provisional bars of past sessions, missing or stale "
        "derived bars) and requests one backfill (a single run) per symbol per contiguous "
        "range, never per day: a fetch where raw bars are missing, a derive-only backfill (no "
        "request) where only h1/h4 are. When the primary history provider serves many "
        "symbols per request (Alpaca: 50), the symbols sharing a range go in one run instead, "
        "up to that many. Ranges of unfinished backfills and of queued or running runs, and "
        "symbols whose last fetch failed less than 10 minutes ago, are left alone."
    ),
)
def coverage_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, pipeline: PipelineSettings
) -> dg.SensorResult | dg.SkipReason:
    assert SYMBOLS.name is not None
    order = list(context.instance.get_dynamic_partitions(SYMBOLS.name))
    with warehouse.connect() as conn:
        reaped = reap_dead_runs(context.instance, conn)
        # Crypto pairs have their own assets and gap sensor (`defs/crypto.py`).
        watched = [s for s in watchlist.list_symbols(conn) if not is_crypto(s.ticker)]
        if not watched:
            return dg.SkipReason("the watchlist is empty")
        incomplete = incomplete_watchlist(conn, watched, pipeline)
    if reaped:
        context.log.warning(f"runs of dead workers marked failed: {', '.join(reaped)}")
    gaps = gaps_to_request(watched, incomplete, pipeline, inflight_ranges(context.instance))
    if not gaps:
        return dg.SkipReason(f"{len(watched)} symbol(s) complete, waiting or in flight")
    # A symbol added a moment ago may not be a partition yet: add it in this same tick, so a
    # new symbol's backfill starts without waiting for the watchlist sensor (or, batched with
    # others, on the next tick, once its place among the partitions is known).
    new_symbols = sorted({g.symbol for g in gaps} - set(order))
    size = history_batch_size(Provider(pipeline.history_providers[0]))
    batches = batch_gaps(gaps, order, size)
    requests = [_request(context, b) for b in batches[:MAX_REQUESTS_PER_TICK]]
    context.log.info(
        f"requesting {len(requests)} of {len(batches)} run(s) for {len(gaps)} range(s): "
        + ", ".join(
            f"{_label(b.symbols)} {b.gap.start}..{b.gap.end}{'' if b.fetch else ' (derive)'}"
            for b in batches[:5]
        )
        + (
            f"; new, batched from the next tick: {', '.join(new_symbols)}"
            if size > 1 and new_symbols
            else ""
        )
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[SYMBOLS.build_add_request(new_symbols)] if new_symbols else [],
    )


def _request(context: dg.SensorEvaluationContext, batch: GapBatch) -> dg.RunRequest:
    assets = BAR_ASSET_KEYS if batch.fetch else DERIVED_ASSET_KEYS
    # A backfill's tags are its run's tags.
    tags = {TRIGGER_TAG: "coverage_gap_sensor", PRIORITY_TAG: str(batch.priority)}
    if len(batch.symbols) == 1:
        assert context.repository_def is not None  # the daemon evaluates sensors with defs
        (symbol,) = batch.symbols
        return backfill_request(
            context.repository_def.asset_graph,
            assets,
            symbol=symbol,
            first_day=batch.gap.start,
            last_day=batch.gap.end,
            tags={SYMBOL_TAG: symbol, **tags},
        )
    return batch_run_request(
        assets, symbols=batch.symbols, first_day=batch.gap.start, last_day=batch.gap.end, tags=tags
    )


def _label(symbols: tuple[str, ...]) -> str:
    return symbols[0] if len(symbols) == 1 else f"{symbols[0]}..{symbols[-1]} ({len(symbols)})"
