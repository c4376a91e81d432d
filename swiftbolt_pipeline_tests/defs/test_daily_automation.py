"""The daily automation: `daily_gap_sensor` asks for the years a watched symbol lacks (one
backfill per contiguous range), nothing for years fetched or in flight; the morning schedule
refreshes the previous session's year. Evaluated with Dagster's context builders over a real
PostgreSQL and the emulator."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.daily_automation import daily_gap_sensor, refresh_daily_schedule
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.defs.test_automation import _submit
from swiftbolt_pipeline_tests.defs.test_daily_assets import _materialize
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

ET = ZoneInfo("America/New_York")
DAILY = ["d1_bars", "mo1_bars", "w1_bars"]


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _sensor(instance: dg.DagsterInstance, db_url: str):
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "pipeline": PipelineSettings.from_settings(Settings.from_env()),
        },
        definitions=build_definitions(Settings.from_env()),
    ) as context:
        return daily_gap_sensor(context)


def _years(request: dg.RunRequest) -> tuple[str, list[str], list[str]]:
    subset = request.asset_graph_subset
    assert subset is not None
    keys = sorted({str(key) for _, key in subset.iterate_asset_partitions()})
    return (
        request.tags["swiftbolt/symbol"],
        keys,
        sorted(k.to_user_string() for k in subset.asset_keys),
    )


def test_daily_gap_sensor_requests_missing_years_once(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["SPY"], priority=1)
    watchlist.add(conn, ["QQQ"], priority=5)
    instance.add_dynamic_partitions("symbols", ["QQQ", "SPY"])
    # SPY's 2025 and 2026 are fetched; its 2021..2024 and all of QQQ's years are not.
    assert _materialize(instance, "SPY", [2025, 2026]).success

    result = _sensor(instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    requests = [_years(r) for r in result.run_requests or []]
    assert requests == [
        ("QQQ", [f"QQQ|{y}" for y in range(2021, 2027)], DAILY),  # higher priority first
        ("SPY", [f"SPY|{y}" for y in range(2021, 2025)], DAILY),
    ]
    for request in result.run_requests or []:
        _submit(instance, request)
    # In flight now: the next tick asks for nothing more.
    assert isinstance(_sensor(instance, pipeline_env["DATABASE_URL"]), dg.SkipReason)


def test_daily_gap_sensor_batches_alpaca_neighbours_into_one_run(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    emulator: str,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "alpaca")
    watchlist.add(conn, ["AAPL", "MSFT", "NVDA", "QQQ"], priority=1)
    watchlist.add(conn, ["SPY"], priority=5)  # its own priority: its own run, first
    # SPY sits between MSFT and NVDA among the partitions, so it splits the stretch.
    instance.add_dynamic_partitions("symbols", ["AAPL", "MSFT", "SPY", "NVDA", "QQQ"])
    result = _sensor(instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    requests = result.run_requests or []
    assert _years(requests[0]) == ("SPY", [f"SPY|{y}" for y in range(2021, 2027)], DAILY)
    years = range(2021, 2027)
    assert [_rectangle(instance, r) for r in requests[1:]] == [
        {f"{s}|{y}" for s in ("AAPL", "MSFT") for y in years},
        {f"{s}|{y}" for s in ("NVDA", "QQQ") for y in years},
    ]
    assert [r.tags["swiftbolt/symbols"] for r in requests[1:]] == ["AAPL,MSFT", "NVDA,QQQ"]

    reset_emulator(emulator)
    for request in requests[1:]:
        assert _launch_daily(instance, request).success
    # Two symbols x ~1,260 sessions fit one 10,000-bar page: one request per run.
    assert emulator_requests(emulator, "alpaca") == 2
    for symbol in ("AAPL", "MSFT", "NVDA", "QQQ"):
        assert _d1_count(conn, symbol) > 1_000, symbol
    _submit(instance, requests[0])  # SPY's backfill
    # Fetched or in flight: the next tick asks for nothing more.
    assert isinstance(_sensor(instance, pipeline_env["DATABASE_URL"]), dg.SkipReason)


def _rectangle(instance: dg.DagsterInstance, request: dg.RunRequest) -> set[str]:
    """The daily partitions a plain run's range tags cover, as Dagster resolves them."""
    partitions = build_definitions(Settings.from_env()).get_assets_def("d1_bars").partitions_def
    assert partitions is not None
    return set(
        partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(
                request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"],
            ),
            dynamic_partitions_store=instance,
        )
    )


def _launch_daily(
    instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    job = build_definitions(Settings.from_env()).resolve_job_def("daily_job")
    return job.execute_in_process(
        instance=instance,
        tags=request.tags,
        asset_selection=list(request.asset_selection or []),
        raise_on_error=False,
    )


def _d1_count(conn: psycopg.Connection, symbol: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id"
        " WHERE s.ticker = %s AND b.timeframe = 'd1'",
        (symbol,),
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def test_daily_gap_sensor_leaves_crypto_pairs_to_their_own_assets(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["X:BTCUSD"], priority=9)
    instance.add_dynamic_partitions("crypto_symbols", ["X:BTCUSD"])
    alone = _sensor(instance, pipeline_env["DATABASE_URL"])
    assert isinstance(alone, dg.SkipReason)
    assert "no watched symbol" in (alone.skip_message or "")

    watchlist.add(conn, ["SPY"])
    instance.add_dynamic_partitions("symbols", ["SPY"])
    result = _sensor(instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    assert [_years(r)[0] for r in result.run_requests or []] == ["SPY"]


def test_a_fetched_year_is_no_gap_even_where_the_provider_has_no_bar(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["SPY"])
    instance.add_dynamic_partitions("symbols", ["SPY"])
    assert _materialize(instance, "SPY", list(range(2021, 2027))).success
    conn.execute("DELETE FROM ohlc_bars_v2 WHERE timeframe = 'd1' AND ts < '2022-01-01'")
    conn.commit()
    assert isinstance(_sensor(instance, pipeline_env["DATABASE_URL"]), dg.SkipReason)


def test_refresh_daily_schedule_covers_the_previous_sessions_year(
    pipeline_env: dict[str, str], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWIFTBOLT_NOW")
    instance.add_dynamic_partitions("symbols", ["SPY", "AAPL"])
    # Monday 2026-01-05 06:00: the previous session is Friday 2026-01-02.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 1, 5, 6, 0, tzinfo=ET),
        resources={"pipeline": PipelineSettings.from_settings(Settings.from_env())},
    ) as context:
        request = refresh_daily_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_start"] == "SPY|2026"
    assert request.tags["dagster/asset_partition_range_end"] == "AAPL|2026"
    # Friday 2026-01-02 06:00: the previous session, 2025-12-31, is last year's.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 1, 2, 6, 0, tzinfo=ET),
        resources={"pipeline": PipelineSettings.from_settings(Settings.from_env())},
    ) as context:
        request = refresh_daily_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["dagster/asset_partition_range_end"] == "AAPL|2025"
