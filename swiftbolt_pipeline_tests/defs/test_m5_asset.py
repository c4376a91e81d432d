"""`m5_bars` (opt-in 5-minute bars) through Dagster's test helpers, against the emulator and a
real PostgreSQL: exact bars, the same requests as m15, and the gap sensor's opt-in rule."""

from __future__ import annotations

from datetime import date

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.assets.m5 import m5_run_config
from swiftbolt_pipeline.defs.assets.m15 import plan_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.m5 import m5_gap_sensor
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import M5_BARS, M5_SYMBOLS_PARTITIONS, M15_BARS, SYMBOLS_PARTITIONS
from swiftbolt_pipeline.services.launch import RunOutcome, materialize_range, register_symbols
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.realdata import regular_m5

FIRST, LAST = date(2025, 10, 27), date(2025, 11, 21)  # 4 weeks across the 2025-11-02 DST change


def materialize_m5(
    symbol: str,
    days: list[date],
    instance: dg.DagsterInstance,
    provider: str | None = None,
    *,
    timeframe: Timeframe = Timeframe.M5,
) -> RunOutcome:
    """One in-process run of `m5_bars` (or, with `timeframe` m15, of `m15_bars`) over `days`,
    `provider` forced when given."""
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    if timeframe == Timeframe.M5:
        asset, partitions, forced = M5_BARS, M5_SYMBOLS_PARTITIONS, m5_run_config
    else:
        asset, partitions, forced = M15_BARS, SYMBOLS_PARTITIONS, plan_run_config
    register_symbols(instance, [symbol], partitions)
    return materialize_range(
        instance, assets, dict(defs.resources or {}), symbols=[symbol], days=days,
        selection=[asset], run_config=forced(provider) if provider else None,
    )  # fmt: skip


def test_four_weeks_store_exactly_the_real_five_minute_bars(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    days = calendar.sessions_between(FIRST, LAST)
    with dg.instance_for_test() as instance:
        outcome = materialize_m5("SPY", days, instance)
        assert outcome.success, outcome.error
        assert {(c.name, c.passed) for c in outcome.checks} == {
            ("bar_counts_match_calendar", True), ("ohlc_sane", True),
            ("no_duplicate_timestamps", True), ("fetch_complete", True),
        }  # fmt: skip
        counts = next(c for c in outcome.checks if c.name == "bar_counts_match_calendar")
        assert counts.metadata["expected_bars"] == counts.metadata["stored_bars"] == 20 * 78
        assert len(instance.get_materialized_partitions(dg.AssetKey(M5_BARS))) == len(days)
    (symbol_id,) = watchlist.ensure(conn, ["SPY"]).values()
    stored = bar_store.read_bars(conn, symbol_id, Timeframe.M5, FIRST, LAST)
    expected = regular_m5("SPY", FIRST, LAST)
    assert stored.height == 20 * 78 == expected.height
    assert stored.select(expected.columns).equals(expected)
    # m5 has its own ledger rows and confirmations; no m15 bar was written.
    assert conn.execute(
        "SELECT timeframe, sum(actual_cost) FROM job_runs GROUP BY timeframe"
    ).fetchall() == [("m5", 1)]
    assert conn.execute(
        "SELECT count(*), sum(bars) FROM confirmed_sessions WHERE timeframe = 'm5'"
    ).fetchone() == (20, 20 * 78)
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe <> 'm5'").fetchone() == (
        0,
    )


def _requests(emulator: str, route: str, symbol: str) -> int:
    return httpx.get(f"{emulator}/_emulator/requests").json().get(route, {}).get(symbol, 0)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_two_years_of_m5_cost_exactly_the_requests_of_m15(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """One symbol x 501 sessions, counted at the emulator: Polygon's limit counts base minutes,
    so 5-minute bars take the same windows (and pages) as 15-minute ones; one symbol's m5
    window also fits one Alpaca page (at most 10,000 bars)."""
    days = calendar.sessions_between(date(2024, 3, 20), date(2026, 3, 19))
    assert len(days) == 501
    counted: dict[tuple[str, str], int] = {}
    with dg.instance_for_test() as instance:
        for provider, symbol in (("polygon", "NVDA"), ("alpaca", "MSFT")):
            for timeframe in (Timeframe.M15, Timeframe.M5):
                httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
                outcome = materialize_m5(symbol, days, instance, provider, timeframe=timeframe)
                assert outcome.success, outcome.error
                counted[(provider, timeframe.value)] = _requests(emulator, provider, symbol)
    assert counted[("polygon", "m5")] == counted[("polygon", "m15")] == 10
    assert counted[("alpaca", "m5")] == counted[("alpaca", "m15")] == 10
    # The ledger agrees with the emulator, and every planned request was the one sent.
    ledger = conn.execute(
        """SELECT provider, timeframe, sum(actual_cost), sum(expected_cost) FROM job_runs
           GROUP BY provider, timeframe ORDER BY 1, 2"""
    ).fetchall()
    assert ledger == [
        ("alpaca", "m15", 10, 10), ("alpaca", "m5", 10, 10),
        ("polygon", "m15", 10, 10), ("polygon", "m5", 10, 10),
    ]  # fmt: skip


def _sensor(instance: dg.DagsterInstance, db_url: str, **settings: bool):
    pipeline = PipelineSettings.from_settings(Settings.from_env())
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "pipeline": PipelineSettings(**{**pipeline.model_dump(), **settings}),
        },
        definitions=build_definitions(Settings.from_env()),
    ) as context:
        return m5_gap_sensor(context)


def test_gap_sensor_adds_only_opted_in_symbols_and_requests_their_range(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    watchlist.add(conn, ["AAPL"], window_days=10)
    watchlist.add(conn, ["QQQ"], window_days=10, m5=True)
    with dg.instance_for_test() as instance:
        result = _sensor(instance, pipeline_env["DATABASE_URL"])
        assert isinstance(result, dg.SensorResult)
        (added,) = result.dynamic_partitions_requests or []
        assert isinstance(added, dg.AddDynamicPartitionsRequest)
        assert list(added.partition_keys) == ["QQQ"]
        (request,) = result.run_requests or []
        subset = request.asset_graph_subset
        assert subset is not None and subset.asset_keys == {dg.AssetKey(M5_BARS)}
        keys = sorted(str(k) for _, k in subset.iterate_asset_partitions())
        # 10 calendar days back from 2026-03-20 12:00 ET (pinned), today included: Tradier
        # serves today's 5-minute bars.
        sessions = calendar.sessions_between(date(2026, 3, 10), date(2026, 3, 20))
        assert keys == sorted(f"{d.isoformat()}|QQQ" for d in sessions)
        # SWIFTBOLT_M5=1: every watched stock, AAPL too; opting out removes a partition.
        instance.add_dynamic_partitions(M5_SYMBOLS_PARTITIONS, ["QQQ"])
        everyone = _sensor(instance, pipeline_env["DATABASE_URL"], m5_all=True)
        assert isinstance(everyone, dg.SensorResult)
        assert {r.tags["swiftbolt/symbol"] for r in everyone.run_requests or []} == {"AAPL", "QQQ"}
        watchlist.add(conn, ["QQQ"], window_days=10, m5=False)
        dropped = _sensor(instance, pipeline_env["DATABASE_URL"])
        assert isinstance(dropped, dg.SensorResult) and not dropped.run_requests
        (removed,) = dropped.dynamic_partitions_requests or []
        assert isinstance(removed, dg.DeleteDynamicPartitionsRequest)
        assert list(removed.partition_keys) == ["QQQ"]
