"""Provider routing: history from Polygon, today's session from Tradier, replaced later."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run


def _by_day(conn: psycopg.Connection) -> dict[date, tuple[int, str, bool]]:
    rows = conn.execute(
        """SELECT (ts AT TIME ZONE 'America/New_York')::date, count(*), min(provider),
                  bool_and(is_intraday)
           FROM ohlc_bars_v2 WHERE timeframe = 'm15' GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    conn.commit()
    return {day: (count, provider, intraday) for day, count, provider, intraday in rows}


def test_today_from_tradier_then_replaced_by_polygon(
    pipeline_env: dict[str, str], conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-11T11:05:00-04:00")
    days = calendar.sessions_between(date(2026, 3, 9), date(2026, 3, 11))
    with dg.instance_for_test() as instance:
        outcome = _run("SPY", days, instance)
        assert outcome.success, outcome.error
        assert _by_day(conn) == {
            date(2026, 3, 9): (26, "polygon", False),
            date(2026, 3, 10): (26, "polygon", False),
            # 09:30..10:45 ET: the complete bars at 11:05; the 11:00 bar is still forming.
            date(2026, 3, 11): (6, "tradier", True),
        }
        cost = conn.execute(
            "SELECT provider, sum(actual_cost) FROM job_runs GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert cost == [("polygon", 1), ("tradier", 1)]

        monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-13T09:00:00-04:00")
        outcome = _run("SPY", [date(2026, 3, 11)], instance)
        assert outcome.success, outcome.error
    assert _by_day(conn)[date(2026, 3, 11)] == (26, "polygon", False)
