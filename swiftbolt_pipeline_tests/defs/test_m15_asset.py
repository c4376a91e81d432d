"""`m15_bars` through Dagster's own test helpers, against the emulator and a real PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

import dagster as dg
import polars as pl
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.services.launch import RunOutcome
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import materialize

FIRST, LAST = date(2025, 10, 27), date(2025, 11, 21)  # 4 weeks across the 2025-11-02 DST change


def _run(
    symbol: str,
    days: list[date],
    instance: dg.DagsterInstance,
    selection: Sequence[str] = ("m15_bars",),
) -> RunOutcome:
    """One in-process run over `days` (retry backoff scaled down, so outages don't sleep)."""
    return materialize(symbol, days, instance, selection=selection)


def _stored(conn: psycopg.Connection, symbol: str) -> pl.DataFrame:
    row = conn.execute("SELECT id FROM symbols WHERE ticker = %s", (symbol,)).fetchone()
    assert row is not None
    return bar_store.read_bars(conn, row[0], Timeframe.M15, FIRST, LAST)


def test_four_weeks_store_exactly_the_regular_session_bars(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    days = calendar.sessions_between(FIRST, LAST)
    with dg.instance_for_test() as instance:
        outcome = _run("SPY", days, instance, selection=["m15_bars", "h1_bars", "h4_bars"])
        assert outcome.success, outcome.error
        assert {(c.asset, c.name, c.passed) for c in outcome.checks} == {
            ("m15_bars", "bar_counts_match_calendar", True),
            ("m15_bars", "ohlc_sane", True),
            ("m15_bars", "no_duplicate_timestamps", True),
            ("m15_bars", "provider_data_clean", True),
            ("m15_bars", "fetch_complete", True),
            *{(f"{tf}_bars", "bar_counts_match_calendar", True) for tf in ("h1", "h4")},
            *{(f"{tf}_bars", "consistent_with_m15", True) for tf in ("h1", "h4")},
        }
        m15_counts = next(
            c
            for c in outcome.checks
            if c.asset == "m15_bars" and c.name == "bar_counts_match_calendar"
        )
        assert m15_counts.metadata["expected_bars"] == m15_counts.metadata["stored_bars"] == 20 * 26
        # One run for the whole range (single-run backfill policy).
        assert len(instance.get_runs()) == 1
        for asset in ("m15_bars", "h1_bars", "h4_bars"):
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert len(materialized) == len(days)

    stored = _stored(conn, "SPY")
    expected = regular_m15("SPY", FIRST, LAST)
    assert stored.height == len(days) * 26 == expected.height
    assert stored.select("ts", "open", "high", "low", "close", "volume").equals(expected)

    cost = conn.execute("SELECT sum(actual_cost), sum(expected_cost) FROM job_runs").fetchone()
    minutes = sum(calendar.session(d).extended_minutes for d in days)
    assert cost is not None and cost[0] <= math.ceil(minutes / 50_000) + 1
    assert cost[0] == cost[1] == 1


def test_rerun_changes_nothing(pipeline_env: dict[str, str], conn: psycopg.Connection) -> None:
    days = calendar.sessions_between(FIRST, LAST)
    with dg.instance_for_test() as instance:
        assert _run("QQQ", days, instance).success
        first = _stored(conn, "QQQ")
        conn.commit()
        assert _run("QQQ", days, instance).success
    second = _stored(conn, "QQQ")
    assert second.equals(first)
    count = conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone()
    assert count == (first.height,)


def test_materialization_metadata(pipeline_env: dict[str, str]) -> None:
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
    with dg.instance_for_test() as instance:
        assert _run("AAPL", days, instance).success
        event = instance.get_latest_materialization_event(dg.AssetKey("m15_bars"))
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
    assert metadata["rows"].value == 5 * 26
    assert metadata["requests"].value == 1
    assert metadata["provider"].value == "polygon"
    assert metadata["first_bar"].value.startswith("2025-06-02 13:30")
    assert metadata["last_bar"].value.startswith("2025-06-06 19:45")
    # The preview shows the last stored bars: 15:45 ET on Friday is 19:45 UTC.
    assert "| 2025-06-06 19:45 |" in metadata["preview"].value


def test_unknown_ticker_fails_and_writes_nothing(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
    with dg.instance_for_test() as instance:
        outcome = _run("ZZZZ", days, instance)
    assert not outcome.success
    assert outcome.error is not None and "SYMBOL_NOT_FOUND" in outcome.error
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)


@pytest.mark.parametrize("status", [503])
def test_provider_outage_fails_cleanly_and_records_the_cost(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str, status: int
) -> None:
    import httpx

    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.post(
        f"{emulator}/_emulator/faults",
        json={"route": "polygon", "kind": "status", "status": status, "count": 100},
    ).raise_for_status()
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
    try:
        with dg.instance_for_test() as instance:
            outcome = _run("MSFT", days, instance)
    finally:
        httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    assert not outcome.success
    assert outcome.error is not None and "PROVIDER_UNAVAILABLE" in outcome.error
    row = conn.execute(
        "SELECT status, error_code, actual_cost FROM job_runs WHERE symbol = 'MSFT'"
    ).fetchone()
    assert row == ("failed", "PROVIDER_UNAVAILABLE", 5)
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)
