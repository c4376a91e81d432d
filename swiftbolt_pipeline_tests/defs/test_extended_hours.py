"""SWIFTBOLT_EXTENDED_HOURS keeps 04:00-20:00 ET m15 bars; derived bars stay regular-session."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run
from swiftbolt_pipeline_tests.realdata import regular_m15

FIRST, LAST = date(2025, 10, 1), date(2025, 10, 3)  # the real data has extended hours here


def _by_timeframe(conn: psycopg.Connection, regular_only: bool) -> dict[str, int]:
    rows = conn.execute(
        """SELECT timeframe, count(*) FROM ohlc_bars_v2 b
           WHERE NOT %s OR ((ts AT TIME ZONE 'America/New_York')::time >= '09:30'
                            AND (ts AT TIME ZONE 'America/New_York')::time < '16:00')
           GROUP BY 1""",
        (regular_only,),
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("extended", [False, True])
def test_extended_hours_setting(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    extended: bool,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_EXTENDED_HOURS", "1" if extended else "0")
    days = calendar.sessions_between(FIRST, LAST)
    with dg.instance_for_test() as instance:
        outcome = _run("SPY", days, instance, selection=["m15_bars", "h1_bars", "h4_bars"])
    assert outcome.success, outcome.error
    assert all(check.passed for check in outcome.checks if check.name != "provider_data_clean")
    everything, regular = _by_timeframe(conn, False), _by_timeframe(conn, True)
    # Derived timeframes always use the regular session only.
    assert (everything["h1"], everything["h4"]) == (3 * 7, 3 * 2)
    assert regular["m15"] == 3 * 26 == regular_m15("SPY", FIRST, LAST).height
    if extended:
        assert everything["m15"] > regular["m15"]
        earliest = conn.execute(
            """SELECT min((ts AT TIME ZONE 'America/New_York')::time) FROM ohlc_bars_v2
               WHERE timeframe = 'm15'"""
        ).fetchone()
        assert earliest is not None and earliest[0].hour < 9
    else:
        assert everything["m15"] == regular["m15"]
