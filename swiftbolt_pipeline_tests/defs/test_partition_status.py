"""The partition status sensor: after it ran, Dagster's stored status of every partitioned
asset matches its partitions and the event log, so a page reads it instead of rebuilding it.
Expected values come from the seed plan's own counts, checked by Dagster's reader."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from swiftbolt_pipeline.bench.ui_seed import Cell, DailyPlan, SeedPlan, seed
from swiftbolt_pipeline.bench.ui_world import UiWorld, ui_world
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.partition_status import partition_status_sensor
from swiftbolt_pipeline.defs.partitions import bar_partitions, daily_partitions
from swiftbolt_pipeline.names import DAILY_ASSETS, SESSION_ASSETS, SYMBOLS_PARTITIONS
from swiftbolt_pipeline.services import partition_status

pytestmark = pytest.mark.slow  # a scratch instance and three full rebuilds: about 30 s

KEYS = [dg.AssetKey(a) for a in (*SESSION_ASSETS, *DAILY_ASSETS)]


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[UiWorld, SeedPlan]]:
    with ui_world() as world:
        plan = SeedPlan(12, world.sessions)
        seed(world.instance, plan, DailyPlan(12, (2025, 2026)))
        yield world, plan


def _partitions(world: UiWorld) -> dict[dg.AssetKey, dg.PartitionsDefinition]:
    bars, daily = bar_partitions(world.settings), daily_partitions(world.settings)
    return {key: bars if key.path[0] in SESSION_ASSETS else daily for key in KEYS}


def test_sensor_rebuilds_stale_status_then_only_updates(seeded: tuple[UiWorld, SeedPlan]) -> None:
    world, plan = seeded
    instance = world.instance
    partitions = _partitions(world)
    assert partition_status.stale(instance, partitions) == set(KEYS)  # never built
    repository = build_definitions(world.settings).get_repository_def()
    context = dg.build_sensor_context(instance=instance, repository_def=repository)
    result = partition_status_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "rebuilt 6 asset(s)" in str(result.skip_message)
    assert partition_status.stale(instance, partitions) == set()
    # What the UI reads now is the plan, without another rebuild.
    bars = partitions[dg.AssetKey(SESSION_ASSETS[0])]
    status = get_and_update_asset_status_cache_value(instance, KEYS[0], bars)
    assert status is not None
    assert (
        len(status.deserialize_materialized_partition_subsets(bars))
        == plan.counts[Cell.MATERIALIZED]
    )
    again = partition_status.refresh(instance, partitions, budget_s=60)
    assert again.rebuilt == [] and len(again.updated) == len(KEYS)


def test_a_new_watchlist_symbol_makes_every_symbol_asset_stale(
    seeded: tuple[UiWorld, SeedPlan],
) -> None:
    world, _ = seeded
    partitions = _partitions(world)
    partition_status.refresh(world.instance, partitions, budget_s=60)
    world.instance.add_dynamic_partitions(SYMBOLS_PARTITIONS, ["NEW1"])
    assert partition_status.stale(world.instance, partitions) == set(KEYS)
    partition_status.refresh(world.instance, partitions, budget_s=60)
    assert partition_status.stale(world.instance, partitions) == set()


def test_the_budget_defers_the_rest_stale_first(seeded: tuple[UiWorld, SeedPlan]) -> None:
    world, _ = seeded
    partitions = _partitions(world)
    partition_status.refresh(world.instance, partitions, budget_s=60)
    world.instance.wipe_asset_cached_status([KEYS[4]])  # w1_bars stale
    ticks = count(step=10)  # each call to the clock is 10 s later
    done = partition_status.refresh(
        world.instance, partitions, budget_s=25, clock=lambda: float(next(ticks))
    )
    # Clock reads: start 0, then 10, 20 (two assets started), 30 >= 25: stop.
    assert done.rebuilt == [KEYS[4]]
    assert len(done.updated) == 1
    assert len(done.deferred) == len(KEYS) - 2
