"""The UI bench's seed: the plan's shape, the event template against Dagster's serializer, and
what Dagster itself reads back from a seeded PostgreSQL instance (its materialized partitions
and its partition status cache, the source of the UI's counts)."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import dagster as dg
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
from swiftbolt_pipeline.bench.ui_world import ui_world
from swiftbolt_pipeline.cli.bench import bench
from swiftbolt_pipeline.defs.partitions import bar_partitions
from swiftbolt_pipeline.names import M15_BARS, SESSION_ASSETS, partition_key

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
