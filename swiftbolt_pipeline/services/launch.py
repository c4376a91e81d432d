"""Bar backfills of a range of sessions: materialized in process (the CLI), or requested from
a sensor as a Dagster backfill of one symbol (the daemon launches it; the UI lists it) or as
one run over several symbols (a provider that serves many symbols per request).

A run covers a rectangle: the symbol partitions from its first to its last symbol, in
Dagster's order of the dynamic partitions, by the sessions from its first to its last day.
Several symbols go in one run only when they are neighbours in that order
(`core.planning.symbol_batches`), so a run never touches a symbol it was not asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.execution_result import ExecutionResult
from dagster_shared.error import SerializableErrorInfo

from swiftbolt_pipeline.core.calendar import NYSE, DayCalendar
from swiftbolt_pipeline.names import (
    SYMBOL_TAG,
    SYMBOLS_PARTITIONS,
    SYMBOLS_TAG,
    days_by_symbol,
    partition_key,
    range_tags,
    year_partition_key,
    year_range_tags,
)


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    metadata: dict[str, object]


@dataclass(frozen=True)
class RunOutcome:
    symbols: tuple[str, ...]
    run_id: str
    success: bool
    partitions: int
    error: str | None
    checks: tuple[CheckOutcome, ...] = ()


# Pools cap concurrent fetching steps (not request rate: the token bucket does that); each
# provider's step of `m15_bars` holds its own provider's pool.
POOL_LIMITS = {"polygon": 2, "tradier": 2, "alpaca": 2}


def configure_pools(instance: dg.DagsterInstance) -> None:
    """Per-pool concurrency limits on the instance (idempotent)."""
    for pool, limit in POOL_LIMITS.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)


def register_symbols(
    instance: dg.DagsterInstance, symbols: Sequence[str], partitions: str = SYMBOLS_PARTITIONS
) -> None:
    """Make symbols dynamic partitions of `partitions` (idempotent; crypto pairs have their
    own, `crypto_symbols`)."""
    known = set(instance.get_dynamic_partitions(partitions))
    missing = [s for s in symbols if s not in known]
    if missing:
        instance.add_dynamic_partitions(partitions, missing)


def materialize_range(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, object],
    *,
    symbols: Sequence[str],
    days: Sequence[date],
    selection: Sequence[str],
    log_level: str = "INFO",
    run_config: dict[str, Any] | None = None,
) -> RunOutcome:
    """One run over `days` (consecutive sessions) of `symbols` (neighbours in the symbol
    partitions' order, see `core.planning.symbol_batches`) for the selected assets."""
    tags = range_tags(symbols[0], symbols[-1], days[0], days[-1])
    return _materialize(
        instance, assets, resources, symbols=symbols, partitions=len(symbols) * len(days),
        selection=selection, tags=tags, log_level=log_level, run_config=run_config,
    )  # fmt: skip


def materialize_years(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, object],
    *,
    symbols: Sequence[str],
    years: Sequence[int],
    selection: Sequence[str],
    log_level: str = "INFO",
) -> RunOutcome:
    """One run over the year partitions `years` (consecutive) of `symbols` for the selected
    daily assets (d1, w1, mo1)."""
    tags = year_range_tags(symbols[0], symbols[-1], years[0], years[-1])
    return _materialize(
        instance, assets, resources, symbols=symbols, partitions=len(symbols) * len(years),
        selection=selection, tags=tags, log_level=log_level, run_config=None,
    )  # fmt: skip


def _materialize(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, object],
    *,
    symbols: Sequence[str],
    partitions: int,
    selection: Sequence[str],
    tags: dict[str, str],
    log_level: str,
    run_config: dict[str, Any] | None,
) -> RunOutcome:
    result = dg.materialize(
        list(assets),
        instance=instance,
        resources=resources,
        selection=list(selection),
        raise_on_error=False,
        run_config={
            **(run_config or {}),
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        # Dagster 1.13 has no public way to run a partition range in process: `materialize`
        # and `execute_in_process` take one partition key, and a backfill submitted to the
        # instance waits for the daemon, which the CLI must not need. So the run carries the
        # range tags Dagster puts on a single-run backfill's run.
        tags={**tags, **symbol_tags(symbols)},
    )
    return run_outcome(result, symbols, partitions)


def run_outcome(result: ExecutionResult, symbols: Sequence[str], partitions: int) -> RunOutcome:
    """What a finished run did: its first step failure's root cause, its check results."""
    error = None
    if not result.success:
        failures = [
            root_cause(event.step_failure_data.error)
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error
        ]
        error = failures[0] if failures else "run failed"
    checks = tuple(
        CheckOutcome(
            evaluation.asset_key.to_user_string(),
            evaluation.check_name,
            evaluation.passed,
            {key: value.value for key, value in evaluation.metadata.items()},
        )
        for evaluation in result.get_asset_check_evaluations()
    )
    return RunOutcome(tuple(symbols), result.run_id, result.success, partitions, error, checks)


def symbol_tags(symbols: Sequence[str]) -> dict[str, str]:
    """The tag naming a run's symbols: `swiftbolt/symbol` for one (the UI and the API find a
    symbol's runs by it), `swiftbolt/symbols` (comma-separated) for a batch."""
    if len(symbols) == 1:
        return {SYMBOL_TAG: symbols[0]}
    return {SYMBOLS_TAG: ",".join(symbols)}


def backfill_request(
    asset_graph: BaseAssetGraph,
    assets: Sequence[dg.AssetKey],
    *,
    symbol: str,
    first_day: date,
    last_day: date,
    tags: Mapping[str, str],
    cal: DayCalendar = NYSE,
) -> dg.RunRequest:
    """A sensor's request for a Dagster backfill of `assets` over `symbol`'s sessions
    `first_day`..`last_day` (days of `cal`: NYSE sessions, or every UTC day for crypto). Their
    single-run backfill policy makes it one run.

    Dagster 1.13 launches a backfill from a sensor only for a request built from an
    `AssetGraphSubset` (no public constructor yet), so this is the one place that builds one."""
    keys = [partition_key(symbol, day) for day in cal.days_between(first_day, last_day)]
    subset = AssetGraphSubset.from_asset_partition_set(
        {AssetKeyPartitionKey(asset, key) for asset in assets for key in keys}, asset_graph
    )
    return dg.RunRequest.for_asset_graph_subset(subset, tags=dict(tags))


def daily_backfill_request(
    asset_graph: BaseAssetGraph,
    assets: Sequence[dg.AssetKey],
    *,
    symbol: str,
    first_year: int,
    last_year: int,
    tags: Mapping[str, str],
) -> dg.RunRequest:
    """`backfill_request` for the daily assets: `symbol`'s years `first_year`..`last_year`,
    one run (single-run backfill policy), one provider request."""
    keys = [year_partition_key(symbol, y) for y in range(first_year, last_year + 1)]
    subset = AssetGraphSubset.from_asset_partition_set(
        {AssetKeyPartitionKey(asset, key) for asset in assets for key in keys}, asset_graph
    )
    return dg.RunRequest.for_asset_graph_subset(subset, tags=dict(tags))


def batch_run_request(
    assets: Sequence[dg.AssetKey],
    *,
    symbols: Sequence[str],
    first_day: date,
    last_day: date,
    tags: Mapping[str, str],
) -> dg.RunRequest:
    """A sensor's request for one run of `assets` over `symbols` (neighbours in the symbol
    partitions' order) x sessions `first_day`..`last_day`.

    A plain run, not a backfill: Dagster's backfill daemon splits a multi-partitioned target
    into one run per symbol (or per day), whatever its backfill policy; range tags are the
    one way to give several symbols one run."""
    return dg.RunRequest(
        asset_selection=list(assets),
        tags={
            **tags,
            **range_tags(symbols[0], symbols[-1], first_day, last_day),
            **symbol_tags(symbols),
        },
    )


def as_single_run(request: dg.RunRequest) -> dg.RunRequest:
    """The run that the backfill daemon launches for a backfill request of single-run assets
    (range tags and the backfill's assets), for a driver that plays the daemons in process;
    any other request as it is."""
    subset = request.asset_graph_subset
    if subset is None:
        return request
    keys = sorted({str(key) for _, key in subset.iterate_asset_partitions() if key})
    by_symbol = days_by_symbol(keys)
    symbols = sorted(by_symbol)
    first_day = min(days[0] for days in by_symbol.values())
    last_day = max(days[-1] for days in by_symbol.values())
    return dg.RunRequest(
        asset_selection=sorted(subset.asset_keys),
        tags={**request.tags, **range_tags(symbols[0], symbols[-1], first_day, last_day)},
    )


def root_cause(error: SerializableErrorInfo) -> str:
    """The innermost error message: Dagster wraps the asset's exception in its own."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
