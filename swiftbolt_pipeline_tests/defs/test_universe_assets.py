"""The universe assets in process: a run over two universes (as the UI's partition picker can
launch) fetches each distinct member once and records both universes' outcomes."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.defs.assets.universe import universe_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.names import RANGE_END_TAG, RANGE_START_TAG, universe_partition_key
from swiftbolt_pipeline.services.universe import register_universe
from swiftbolt_pipeline.storage import universes
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

DAYS = calendar.sessions_between(date(2026, 2, 9), date(2026, 2, 10))


def test_a_run_over_two_universes_fetches_shared_members_once(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    universes.set_members(conn, "alpha", ["SPY", "QQQ"])
    universes.set_members(conn, "beta", ["QQQ", "AAPL", "ZZNONE"])
    conn.commit()
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    reset_emulator(emulator)
    with dg.instance_for_test() as instance:
        for name in ("alpha", "beta"):
            register_universe(instance, name)
        result = dg.materialize(
            assets,
            instance=instance,
            resources=dict(defs.resources or {}),
            selection=["universe_m15_bars", "universe_derived_bars"],
            run_config=universe_run_config("alpaca"),
            tags={
                RANGE_START_TAG: universe_partition_key("alpha", DAYS[0]),
                RANGE_END_TAG: universe_partition_key("beta", DAYS[-1]),
            },
        )
        assert result.success
        events = result.get_asset_materialization_events()
    # 4 distinct members, one Alpaca batch of one page.
    assert emulator_requests(emulator, "alpaca") == 1
    assert len(events) == 2 * len(DAYS) * 2  # universes x days x assets, not members x days
    metadata = events[0].materialization.metadata
    assert metadata["members"].value == 4
    assert metadata["failed_symbols"].value == 1
    assert metadata["failures_by_code"].value == "SYMBOL_NOT_FOUND=1"
    assert conn.execute(
        """SELECT s.ticker, count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE b.timeframe = 'm15' GROUP BY 1 ORDER BY 1"""
    ).fetchall() == [("AAPL", 52), ("QQQ", 52), ("SPY", 52)]
    assert conn.execute(
        """SELECT m.universe, s.ticker, m.last_error_code FROM universe_members m
           JOIN symbols s ON s.id = m.symbol_id ORDER BY 1, 2"""
    ).fetchall() == [
        ("alpha", "QQQ", None), ("alpha", "SPY", None),
        ("beta", "AAPL", None), ("beta", "QQQ", None), ("beta", "ZZNONE", "SYMBOL_NOT_FOUND"),
    ]  # fmt: skip
