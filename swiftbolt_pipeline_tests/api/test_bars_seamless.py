"""`/v1/bars` across the boundary of history (Polygon) and today's session (Tradier): one
ordered series, exactly the rows `get_chart_data_v2` returns."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.api.conftest import TestClient
from swiftbolt_pipeline_tests.api.test_endpoints import _api_bars, _db_bars
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run


def test_history_and_today_are_one_seamless_series(
    client: TestClient,
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 11:05 ET on 2026-03-11: the 9th and 10th are history, the 11th is today's session.
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-11T11:05:00-04:00")
    days = calendar.sessions_between(date(2026, 3, 9), date(2026, 3, 11))
    outcome = _run("SPY", days, instance, selection=["m15_bars", "h1_bars"])
    assert outcome.success, outcome.error

    start, end = "2026-03-09T00:00:00Z", "2026-03-12T00:00:00Z"
    response = client.get(
        "/v1/bars", params={"symbol": "SPY", "timeframe": "m15", "start": start, "end": end}
    )
    assert response.status_code == 200, response.text
    bars = _api_bars(response.json())
    assert bars == _db_bars(conn, "SPY", "m15", start, end)
    sources = [(b[8], b[9]) for b in bars]
    assert sources == [("polygon", False)] * 52 + [("tradier", True)] * 6
    # No gap and no overlap at the boundary: every session's bars step by 15 minutes, and
    # today's first bar is its open.
    stamps = [b[0] for b in bars]
    assert stamps == sorted(set(stamps))
    for day in days:
        session = [ts for ts in stamps if calendar.exchange_date(ts) == day]
        assert session[0] == calendar.session(day).open
        assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(session))
    assert stamps[52] == datetime.fromisoformat("2026-03-11T13:30:00+00:00")

    h1 = client.get(
        "/v1/bars", params={"symbol": "SPY", "timeframe": "h1", "start": start, "end": end}
    ).json()
    h1_bars = _api_bars(h1)
    assert h1_bars == _db_bars(conn, "SPY", "h1", start, end)
    assert [b[9] for b in h1_bars][:14] == [False] * 14
    assert h1_bars[-1][9] is True and h1_bars[-1][8] == "tradier"
