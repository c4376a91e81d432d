"""The universe assets in process: a run over two universes (as the UI's partition picker can
launch) fetches each distinct member once and records both universes' outcomes."""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg
import polars as pl
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Timeframe
from swiftbolt_pipeline.defs.assets.universe import universe_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.ingest.derive import derive_many
from swiftbolt_pipeline.names import RANGE_END_TAG, RANGE_START_TAG, universe_partition_key
from swiftbolt_pipeline.services.universe import register_universe
from swiftbolt_pipeline.storage import universes
from swiftbolt_pipeline.storage.bars import read_bars, replace_partitions
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


def _derived_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    conn.commit()
    return conn.execute(
        """SELECT s.ticker, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,
                  b.trade_count, b.provider, b.is_intraday, b.fetched_at
             FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
            WHERE b.timeframe IN ('h1', 'h4') ORDER BY 1, 2, 3"""
    ).fetchall()


def test_the_derived_asset_derives_only_what_is_out_of_date(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    universes.set_members(conn, "gamma", ["SPY", "QQQ", "AAPL"])
    conn.commit()
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    tags = {
        RANGE_START_TAG: universe_partition_key("gamma", DAYS[0]),
        RANGE_END_TAG: universe_partition_key("gamma", DAYS[-1]),
    }

    def run(selection: list[str]) -> dict[str, Any]:
        result = dg.materialize(
            assets, instance=instance, resources=dict(defs.resources or {}),
            selection=selection, run_config=universe_run_config("alpaca", selection), tags=tags,
        )  # fmt: skip
        assert result.success
        (event, *_) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    with dg.instance_for_test() as instance:
        register_universe(instance, "gamma")
        run(["universe_m15_bars"])
        assert _derived_rows(conn) == []
        first = run(["universe_derived_bars"])
        written = _derived_rows(conn)
        # 3 members x 2 sessions, each 7 h1 + 2 h4 bars.
        assert first["rederived_symbol_sessions"] == 3 * 2
        assert first["rows"] == len(written) == 3 * 2 * 9
        ids = dict(conn.execute("SELECT ticker, id FROM symbols").fetchall())
        for symbol_id in ids.values():
            derive_many(conn, symbol_id=symbol_id, days=DAYS, timeframes=DERIVED_TIMEFRAMES)
        rederived = _derived_rows(conn)
        # Deriving everything again gives the same bars (only the write time moved).
        assert [r[:-1] for r in rederived] == [r[:-1] for r in written]
        assert all(a[-1] < b[-1] for a, b in zip(written, rederived, strict=True))

        nothing = run(["universe_derived_bars"])
        assert (nothing["rederived_symbol_sessions"], nothing["rows"]) == (0, 0)
        assert _derived_rows(conn) == rederived  # untouched, write times included

        # QQQ's second session is written again (volumes doubled) and SPY's first session
        # loses its h4 bars: exactly those two member-sessions are out of date.
        qqq = read_bars(conn, ids["QQQ"], Timeframe.M15, DAYS[1], DAYS[1])
        replace_partitions(
            conn, symbol_id=ids["QQQ"], timeframe=Timeframe.M15, days=[DAYS[1]],
            bars=qqq.with_columns(pl.col("volume") * 2), provider="alpaca", is_intraday=False,
        )  # fmt: skip
        conn.execute(
            "DELETE FROM ohlc_bars_v2 WHERE symbol_id = %s AND timeframe = 'h4' AND ts < %s",
            (ids["SPY"], calendar.session(DAYS[0]).close),
        )
        conn.commit()
        redone = run(["universe_derived_bars"])
        assert redone["rederived_symbol_sessions"] == 2
        # Both timeframes of each out-of-date member-session are derived again.
        assert (redone["h1_rows"], redone["h4_rows"]) == (2 * 7, 2 * 2)
        after = _derived_rows(conn)
        changed = {(r[0], r[2].astimezone(calendar.EXCHANGE_TZ).date()) for r in after} - {
            (r[0], r[2].astimezone(calendar.EXCHANGE_TZ).date()) for r in rederived
            if r in after
        }  # fmt: skip
        assert changed == {("QQQ", DAYS[1]), ("SPY", DAYS[0])}
        doubled = {r[:3]: r[7] for r in after if r[0] == "QQQ" and r[2].date() == DAYS[1]}
        assert doubled == {r[:3]: 2 * r[7] for r in rederived if r[:3] in doubled}
        spy_h4 = [r[:-1] for r in after if r[0] == "SPY" and r[1] == "h4"]
        assert spy_h4 == [r[:-1] for r in rederived if r[0] == "SPY" and r[1] == "h4"]
