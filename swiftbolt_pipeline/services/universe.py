"""Universe backfills: one in-process run over a universe's range of sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

from swiftbolt_pipeline.names import UNIVERSE_ASSETS, UNIVERSES_PARTITIONS, universe_range_tags
from swiftbolt_pipeline.services.launch import root_cause


@dataclass(frozen=True)
class UniverseOutcome:
    run_id: str
    success: bool
    partitions: int
    error: str | None
    # Each materialized asset's metadata (plain values), by asset name.
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)


def register_universe(instance: dg.DagsterInstance, name: str) -> None:
    """Make `name` a dynamic `universes` partition (idempotent)."""
    if not instance.has_dynamic_partition(UNIVERSES_PARTITIONS, name):
        instance.add_dynamic_partitions(UNIVERSES_PARTITIONS, [name])


def materialize_universe(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, object],
    *,
    universe: str,
    days: Sequence[date],
    log_level: str = "INFO",
    run_config: dict[str, Any] | None = None,
    selection: Sequence[str] = UNIVERSE_ASSETS,
) -> UniverseOutcome:
    """One run of the universe assets in `selection` (all of them by default) over
    `universe`'s sessions `days` (consecutive). As for the watchlist's `materialize_range`,
    the run carries the range tags a single-run backfill's run has."""
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
        tags=universe_range_tags(universe, days[0], days[-1]),
    )
    error = None
    if not result.success:
        failures = [
            root_cause(event.step_failure_data.error)
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error
        ]
        error = failures[0] if failures else "run failed"
    metadata: dict[str, dict[str, object]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        values: dict[str, object] = {
            key: value.value for key, value in materialization.metadata.items()
        }
        metadata[materialization.asset_key.to_user_string()] = values
    return UniverseOutcome(result.run_id, result.success, len(days), error, metadata)
