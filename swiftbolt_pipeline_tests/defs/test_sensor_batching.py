"""The gap sensor groups the symbols sharing a range into one run when the history provider
serves many symbols per request (Alpaca), and keeps one backfill per symbol under Polygon."""

from __future__ import annotations

import math
from datetime import date

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.sensors import MAX_REQUESTS_PER_TICK, coverage_gap_sensor
from swiftbolt_pipeline.names import parse_partition_key
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.defs.test_automation import ALL, _queue, _sensor
from swiftbolt_pipeline_tests.defs.test_operations import _launch, _tick
from swiftbolt_pipeline_tests.defs.test_provider_routing import _as_served, _regular
from swiftbolt_pipeline_tests.reliability.helpers import (
    emulator_requests,
    reset_emulator,
    served_bars,
    stored_m15,
)

# Now = 2026-03-20 (a Friday) 12:00 ET, Tradier configured: a window of 5 calendar days holds
# the sessions 2026-03-16..20, one of 3 days 2026-03-17..20.
FIVE = calendar.sessions_between(date(2026, 3, 15), date(2026, 3, 20))
THREE = calendar.sessions_between(date(2026, 3, 17), date(2026, 3, 20))
SYMBOLS = [f"S{i:02d}" for i in range(70)]


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _watch(conn: psycopg.Connection, instance: dg.DagsterInstance) -> None:
    """70 symbols on a 5-day window and ODD, on a 3-day window, between S54 and S55 among the
    partitions: its gap differs, so it breaks the stretch of the others."""
    watchlist.add(conn, SYMBOLS, window_days=5)
    watchlist.add(conn, ["ODD"], window_days=3)
    instance.add_dynamic_partitions("symbols", [*SYMBOLS[:55], "ODD", *SYMBOLS[55:]])


def _cells(instance: dg.DagsterInstance, request: dg.RunRequest) -> set[tuple[str, date]]:
    """Every (symbol, session) partition the run of `request` covers, as Dagster resolves it."""
    if request.asset_graph_subset is not None:  # a backfill
        keys = {str(k) for _, k in request.asset_graph_subset.iterate_asset_partitions()}
    else:
        partitions = build_definitions(Settings.from_env()).get_assets_def("m15_bars")
        assert isinstance(partitions.partitions_def, dg.MultiPartitionsDefinition)
        keys = set(
            partitions.partitions_def.get_partition_keys_in_range(
                dg.PartitionKeyRange(
                    request.tags["dagster/asset_partition_range_start"],
                    request.tags["dagster/asset_partition_range_end"],
                ),
                dynamic_partitions_store=instance,
            )
        )
    return {parse_partition_key(key) for key in keys}


def _grid(symbols: list[str], days: list[date]) -> set[tuple[str, date]]:
    return {(s, d) for s in symbols for d in days}


def test_alpaca_symbols_sharing_a_range_go_in_one_run_each_fifty(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "alpaca")
    _watch(conn, instance)
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests or []
    # 50 neighbours, the 5 before ODD, the 15 after it; ODD alone (a backfill, as ever).
    assert [_cells(instance, r) for r in requests] == [
        _grid(SYMBOLS[:50], FIVE),
        _grid(SYMBOLS[50:55], FIVE),
        _grid(SYMBOLS[55:], FIVE),
        _grid(["ODD"], THREE),
    ]
    for request in requests[:3]:
        assert request.asset_graph_subset is None  # one run, not a backfill Dagster splits
        assert sorted(k.to_user_string() for k in request.asset_selection or []) == ALL
        symbols = request.tags["swiftbolt/symbols"].split(",")
        assert {s for s, _ in _cells(instance, request)} == set(symbols)
    assert requests[3].tags["swiftbolt/symbol"] == "ODD"

    # Queued, they are in flight: the next tick requests nothing.
    for request in requests[:3]:
        _queue(instance, dict(request.tags), dg.DagsterRunStatus.NOT_STARTED)
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    assert [_cells(instance, r) for r in result.run_requests or []] == [_grid(["ODD"], THREE)]


def test_polygon_keeps_one_backfill_per_symbol(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon,alpaca")  # Polygon serves
    _watch(conn, instance)
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests or []
    # One backfill per symbol, by ticker (equal priorities), as many as a tick requests.
    expected = sorted([*SYMBOLS, "ODD"])[:MAX_REQUESTS_PER_TICK]
    assert [r.tags["swiftbolt/symbol"] for r in requests] == expected
    for request, symbol in zip(requests, expected, strict=True):
        assert request.asset_graph_subset is not None
        assert _cells(instance, request) == _grid([symbol], THREE if symbol == "ODD" else FIVE)


def test_new_alpaca_symbols_become_partitions_then_one_run(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "alpaca")
    watchlist.add(conn, ["NVDA", "AAPL", "MSFT"], window_days=5)
    # Their place among the partitions is not known yet: added now, requested next tick.
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    (add,) = result.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    instance.add_dynamic_partitions("symbols", list(add.partition_keys))

    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert _cells(instance, request) == _grid(["AAPL", "MSFT", "NVDA"], FIVE)


@pytest.mark.slow  # ~20-30 s of end-to-end work; CI's slow suite runs it
def test_the_gap_sensor_fills_sixty_alpaca_symbols_with_two_runs(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    emulator: str,
) -> None:
    # Before today's first bar is complete: a 2-day window is the past sessions 2026-03-18..19.
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-20T09:40:00-04:00")
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "alpaca")
    days = calendar.sessions_between(date(2026, 3, 18), date(2026, 3, 19))
    symbols = SYMBOLS[:60]
    served = {s: served_bars(emulator, s, days[0], days[-1]) for s in symbols}
    pages = [
        math.ceil(sum(len(served[s]) for s in part) / 10_000)
        for part in (symbols[:50], symbols[50:])
    ]
    reset_emulator(emulator)
    watchlist.add(conn, symbols, window_days=2)
    instance.add_dynamic_partitions("symbols", symbols)

    requests = _tick(instance, pipeline_env["DATABASE_URL"])
    assert [_cells(instance, r) for r in requests] == [
        _grid(symbols[:50], days),
        _grid(symbols[50:], days),
    ]
    for request in requests:
        assert _launch(instance, request).success
    assert emulator_requests(emulator, "alpaca") == sum(pages)
    assert emulator_requests(emulator, "polygon") == 0
    for symbol in symbols:
        assert _as_served(stored_m15(conn, symbol)) == _regular(served[symbol], days), symbol
    assert _tick(instance, pipeline_env["DATABASE_URL"]) == []  # complete: nothing more
