"""The UI bench's seed: the plan's shape, the event template against Dagster's serializer, and
what Dagster itself reads back from a seeded PostgreSQL instance (its materialized partitions
and its partition status cache, the source of the UI's counts)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import pairwise

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._serdes import serialize_value
from hypothesis import given
from hypothesis import strategies as st

from swiftbolt_pipeline.bench.ui_seed import (
    Cell,
    MaterializationRows,
    SeedPlan,
    _materialization,
    seed,
)
from swiftbolt_pipeline.bench.ui_universe import (
    UniversePlan,
    planned_event,
    range_metadata,
    run_event,
    seed_universes,
)
from swiftbolt_pipeline.bench.ui_world import ui_world
from swiftbolt_pipeline.cli.bench import bench
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.defs.assets.universe import universe_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.partitions import bar_partitions, universe_partitions
from swiftbolt_pipeline.names import (
    M15_BARS,
    SESSION_ASSETS,
    UNIVERSE_ASSETS,
    UNIVERSE_M15_BARS,
    partition_key,
)
from swiftbolt_pipeline.services.universe import materialize_universe, register_universe
from swiftbolt_pipeline.storage import universes

SESSIONS = tuple(date(2025, 1, 1) + timedelta(days=i) for i in range(502))


@pytest.mark.parametrize("symbols", [1, 10, 500, 2000])
def test_plan_covers_every_cell_once(symbols: int) -> None:
    plan = SeedPlan(symbols, SESSIONS)
    counts = plan.counts
    assert sum(counts.values()) == symbols * len(SESSIONS)
    failing = sum(1 for k in range(symbols) if k % 20 == 3)
    assert counts[Cell.FAILED] == failing * 10
    assert counts[Cell.MATERIALIZED] == sum(1 for _ in plan.materialized_keys())


def test_larger_universes_hold_data_in_fewer_latest_sessions() -> None:
    assert SeedPlan(500, SESSIONS).backfilled == 502
    assert SeedPlan(50, SESSIONS).backfilled == 502
    assert SeedPlan(5000, SESSIONS).backfilled == 50  # 502 x 500 / 5000
    large = SeedPlan(2000, SESSIONS)
    assert large.backfilled == 126  # 502 x 500 / 2000, rounded
    first = SESSIONS[-126]
    days = {key.split("|")[0] for key in large.materialized_keys()}
    assert min(days) >= first.isoformat()
    # Consecutive sessions of the window hold different sets of symbols (so the health bar
    # has a range per session), and never-backfilled symbols hold nothing.
    by_day: dict[str, set[str]] = {}
    for key in large.materialized_keys():
        day, symbol = key.split("|")
        assert int(symbol[1:]) % 10 != 9
        by_day.setdefault(day, set()).add(symbol)
    ordered = [by_day[day] for day in sorted(by_day)]
    assert len(ordered) == 126
    assert all(a != b for a, b in pairwise(ordered))


def test_last_materialized_key_is_the_last_one_written() -> None:
    plan = SeedPlan(50, SESSIONS)
    assert plan.last_materialized_key() == list(plan.materialized_keys())[-1]


symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", min_size=1, max_size=8)


@given(
    symbol=symbols,
    day=st.dates(date(1990, 1, 1), date(2100, 1, 1)),
    timestamp=st.floats(0, 4e9, allow_nan=False),
)
def test_template_rows_equal_dagsters_serialization(
    symbol: str, day: date, timestamp: float
) -> None:
    rows = MaterializationRows(M15_BARS)
    key = str(partition_key(symbol, day))
    assert rows.event(key, timestamp) == serialize_value(_materialization(M15_BARS, key, timestamp))


def test_template_refuses_a_key_json_would_escape() -> None:
    with pytest.raises(ValueError, match="escap"):
        MaterializationRows(M15_BARS).event('2025-01-02|A"B', 1.0)


def test_dagster_reads_back_the_seeded_state() -> None:
    """Seeded into a real instance, Dagster's own status (what the UI counts) is the plan."""
    with ui_world() as world:
        plan = SeedPlan(12, world.sessions)
        result = seed(world.instance, plan)
        assert result.failed_runs == 1  # symbol 3
        partitions_def = bar_partitions(world.settings)
        expected_failed = {str(partition_key("U00003", day)) for day in world.sessions[-10:]}
        for asset in SESSION_ASSETS:
            key = dg.AssetKey(asset)
            materialized = world.instance.get_materialized_partitions(key)
            assert materialized == set(plan.materialized_keys())
            status = get_and_update_asset_status_cache_value(world.instance, key, partitions_def)
            assert status is not None
            failed = status.deserialize_failed_partition_subsets(partitions_def)
            assert set(failed.get_partition_keys()) == expected_failed
            cached = status.deserialize_materialized_partition_subsets(partitions_def)
            assert len(cached) == plan.counts[Cell.MATERIALIZED]
        runs = world.instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE]
        assert runs[0].tags["swiftbolt/symbols"] == "U00003"


@pytest.mark.parametrize("raw", ["", "abc", "500,x", "0", "-5"])
def test_ui_symbols_bad_input_is_refused(raw: str) -> None:
    result = CliRunner().invoke(bench, ["--ui-symbols", raw])
    assert result.exit_code == 2
    assert "expected positive symbol counts separated by commas" in result.output


@pytest.mark.parametrize("raw", ["", "x", "0"])
def test_ui_watchlist_bad_input_is_refused(raw: str) -> None:
    result = CliRunner().invoke(bench, ["--ui-symbols", "500", "--ui-watchlist", raw])
    assert result.exit_code == 2
    assert "--ui-watchlist" in result.output


def test_universe_plan_cuts_every_session_of_every_universe_once() -> None:
    plan = UniversePlan((500, 5000), SESSIONS)
    assert plan.names == ["bench-1-500", "bench-2-5000"]
    for i in range(2):
        ranges = plan.ranges(i)
        assert [d for r in ranges for d in r.days] == list(SESSIONS)
        # Each universe holds every state, in ranges that change state often.
        assert {r.state for r in ranges} == set(Cell)
        assert sum(1 for a, b in pairwise(ranges) if a.state != b.state) >= len(ranges) // 2
    assert sum(plan.counts.values()) == 2 * len(SESSIONS)
    # The two universes' ranges are shifted: their rows of the matrix differ.
    assert [r.state for r in plan.ranges(0)] != [r.state for r in plan.ranges(1)]
    assert plan.members(0) == plan.members(1)[:500]
    assert len(plan.failing_members(1)) == len(range(13, 5000, 97))


def _shape(value: object) -> object:
    """A serialized event with its values replaced by their types; class names and
    metadata labels kept (they are the structure)."""
    if isinstance(value, dict):
        return {
            k: v if k in ("__class__", "label") else _shape(v)
            for k, v in value.items()  # type: ignore[union-attr]
        }
    if isinstance(value, list):
        return [_shape(v) for v in value]  # type: ignore[union-attr]
    return type(value).__name__


def test_universe_events_are_shaped_like_a_real_runs(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """A real `universe backfill` run's events and the seed's, for the same partition."""
    days = calendar.sessions_between(date(2026, 2, 9), date(2026, 2, 10))
    universes.set_members(conn, "bench-1-500", ["SPY", "QQQ"])
    conn.commit()
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    plan = UniversePlan((2,), tuple(days))
    with dg.instance_for_test() as instance:
        register_universe(instance, "bench-1-500")
        outcome = materialize_universe(
            instance, assets, dict(defs.resources or {}), universe="bench-1-500", days=days,
            run_config=universe_run_config("alpaca"),
        )  # fmt: skip
        assert outcome.success
        for asset in UNIVERSE_ASSETS:
            real = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0]
            entry = real.event_log_entry
            partition = entry.get_dagster_event().partition
            assert partition is not None
            metadata = range_metadata(plan, 0, plan.ranges(0)[0])[asset]
            # The assets after universe_m15_bars record its materialization (any storage id).
            upstream = (UNIVERSE_M15_BARS, 1) if asset != UNIVERSE_M15_BARS else None
            seeded = run_event(
                asset, partition, outcome.run_id, entry.timestamp, metadata, upstream
            )
            assert _shape(json.loads(serialize_value(seeded))) == _shape(
                json.loads(serialize_value(entry))
            )
            planned = instance.get_records_for_run(
                outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
            real_planned = next(
                r.event_log_entry
                for r in planned
                if r.event_log_entry.get_dagster_event().asset_key == dg.AssetKey(asset)
            )
            ours = planned_event(asset, partition, outcome.run_id, entry.timestamp)
            assert _shape(json.loads(serialize_value(ours))) == _shape(
                json.loads(serialize_value(real_planned))
            )


def test_dagster_reads_back_the_seeded_universes() -> None:
    with ui_world() as world:
        plan = UniversePlan((30, 300), world.sessions)
        with psycopg.connect(world.environ["DATABASE_URL"]) as conn:
            result = seed_universes(world.instance, conn, plan)
            listed = {u.name: (u.members, u.failing) for u in universes.list_universes(conn)}
        assert listed == {"bench-1-30": (30, 1), "bench-2-300": (300, 3)}
        partitions_def = universe_partitions(world.settings)
        for asset in UNIVERSE_ASSETS:
            status = get_and_update_asset_status_cache_value(
                world.instance, dg.AssetKey(asset), partitions_def
            )
            assert status is not None
            materialized = status.deserialize_materialized_partition_subsets(partitions_def)
            failed = status.deserialize_failed_partition_subsets(partitions_def)
            assert len(materialized) == plan.counts[Cell.MATERIALIZED]
            assert len(failed) == plan.counts[Cell.FAILED]
        assert result.runs == len(world.instance.get_runs())
        latest = world.instance.fetch_materializations(
            dg.AssetKey(UNIVERSE_ASSETS[0]), limit=1
        ).records[0]
        metadata = latest.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["members"].value == 300
        assert metadata["failures_by_code"].value == "SYMBOL_NOT_FOUND=3"
