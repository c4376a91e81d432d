"""Dagster's stored partition status of each asset, kept current off the UI's path.

The UI's counts, health bars and partition grids read the status Dagster caches per asset
(materialized, failed, in progress). The cache is keyed by the asset's partitions: adding a
symbol to the watchlist (a new `symbols` partition) or a new history start makes every cached
status of the symbol-partitioned assets stale, and the next page that reads one rebuilds it
from the event log, about 1.2-1.4 s per asset per 40,000 materialized partitions on two
cores (Dagster builds and validates a multi-partition key per partition). A page showing
several such assets (the catalog, an asset's overview) then waits for all of them: 6-7 s at
a 100-symbol watchlist. `refresh` does that rebuild in the background instead (the
`partition_status_sensor`), stale assets first."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value


@dataclass(frozen=True)
class Refreshed:
    rebuilt: list[dg.AssetKey]  # their stored status did not match their partitions
    updated: list[dg.AssetKey]  # brought up to date with the events since
    deferred: list[dg.AssetKey]  # left for the next call: the time budget was spent


def stale(
    instance: dg.DagsterInstance, partitions: Mapping[dg.AssetKey, dg.PartitionsDefinition]
) -> set[dg.AssetKey]:
    """Assets whose stored status is missing or was built for other partitions."""
    with partition_loading_context(dynamic_partitions_store=instance):
        records = {r.asset_entry.asset_key: r for r in instance.get_asset_records(list(partitions))}
        out = set()
        for key, partitions_def in partitions.items():
            record = records.get(key)
            if record is None:
                continue  # never materialized: nothing to build
            cached = record.asset_entry.cached_status
            if cached is None or cached.partitions_def_id != (
                partitions_def.get_serializable_unique_identifier()
            ):
                out.add(key)
        return out


def refresh(
    instance: dg.DagsterInstance,
    partitions: Mapping[dg.AssetKey, dg.PartitionsDefinition],
    *,
    budget_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Refreshed:
    """Bring each asset's stored status up to date, stale ones first, starting no asset once
    `budget_s` has passed (one rebuild may overrun it)."""
    rebuild = stale(instance, partitions)
    order = sorted(partitions, key=lambda k: (k not in rebuild, k.to_user_string()))
    started = clock()
    done: list[dg.AssetKey] = []
    for key in order:
        if clock() - started >= budget_s:
            break
        get_and_update_asset_status_cache_value(instance, key, partitions[key])
        done.append(key)
    return Refreshed(
        rebuilt=[k for k in done if k in rebuild],
        updated=[k for k in done if k not in rebuild],
        deferred=order[len(done) :],
    )
