"""The HTTP API serves the opt-in 5-minute bars: `/v1/bars?timeframe=m5`, m5 coverage, and
`/v1/ensure-coverage` with m5 opting the symbol in."""

from __future__ import annotations

from datetime import date

import dagster as dg
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.api.conftest import TestClient
from swiftbolt_pipeline_tests.api.test_endpoints import _api_bars, _db_bars
from swiftbolt_pipeline_tests.defs.test_m5_asset import materialize_m5
from swiftbolt_pipeline_tests.realdata import regular_m5

FIRST, LAST = date(2026, 3, 9), date(2026, 3, 12)  # the last days of the shipped real bars


def test_m5_bars_and_coverage(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["QQQ"], window_days=12, m5=True)
    days = calendar.sessions_between(FIRST, LAST)
    assert materialize_m5("QQQ", days, instance).success
    start, end = "2026-03-10T13:30:00Z", "2026-03-11T20:00:00Z"
    response = client.get(
        "/v1/bars", params={"symbol": "qqq", "timeframe": "m5", "start": start, "end": end}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["symbol"], body["timeframe"]) == ("QQQ", "m5")
    assert _api_bars(body) == _db_bars(conn, "QQQ", "m5", start, end)
    truth = regular_m5("QQQ", date(2026, 3, 10), date(2026, 3, 11))
    assert [
        (b["ts"], b["open"], b["high"], b["low"], b["close"], b["volume"]) for b in body["bars"]
    ] == [
        (ts.strftime("%Y-%m-%dT%H:%M:%SZ"), o, h, low, c, v)
        for ts, o, h, low, c, v in truth.iter_rows()
    ]
    assert len(body["bars"]) == 2 * 78
    coverage = client.get(
        "/v1/coverage", params={"symbol": "QQQ", "timeframe": "m5", "window_days": 12}
    ).json()
    # 12 days back from 2026-03-20: 03-09..03-20, of which 03-09..03-12 are stored and final.
    gaps = coverage["gaps"]
    assert coverage["timeframe"] == "m5" and coverage["status"] == "gaps_detected"
    assert coverage["backfill_progress"]["completed_slices"] == 4
    assert coverage["backfill_progress"]["bars_written"] == 4 * 78
    assert [(g["start"], g["end"]) for g in gaps] == [("2026-03-13", "2026-03-20")]


def test_ensure_coverage_of_m5_opts_the_symbol_in(
    client: TestClient, conn: psycopg.Connection
) -> None:
    watchlist.add(conn, ["AAPL"], window_days=30)
    assert not watchlist.m5_symbols(conn)
    response = client.post(
        "/v1/ensure-coverage", json={"symbol": "AAPL", "timeframe": "m5", "window_days": 30}
    )
    assert response.status_code == 200, response.text
    assert [s.ticker for s in watchlist.m5_symbols(conn)] == ["AAPL"]
    # m15 coverage leaves the choice alone.
    client.post("/v1/ensure-coverage", json={"symbol": "AAPL", "timeframe": "m15"})
    assert [s.ticker for s in watchlist.m5_symbols(conn)] == ["AAPL"]
