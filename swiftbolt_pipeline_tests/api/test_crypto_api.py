"""Crypto pairs over HTTP: `/v1/coverage` counts UTC days, `/v1/bars` serves stored bars of an
`X:` ticker, and a malformed pair is refused with INVALID_SYMBOL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from swiftbolt_pipeline.storage import watchlist


def _store_h4(conn: psycopg.Connection, symbol_id: int, day: date) -> None:
    """Six h4 bars of one UTC day, written as a test's SQL (prices 100 + hour)."""
    for hour in range(0, 24, 4):
        ts = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        conn.execute(
            """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                   volume, vwap, trade_count, provider, is_intraday)
               VALUES (%s, 'h4', %s, %s, %s, %s, %s, 10, NULL, 5, 'polygon', false)""",
            (symbol_id, ts, 100 + hour, 101 + hour, 99 + hour, 100 + hour),
        )
    conn.commit()


def test_bars_and_coverage_of_a_crypto_pair(client: TestClient, conn: psycopg.Connection) -> None:
    (pair,) = watchlist.add(conn, ["X:BTCUSD"], window_days=3)
    christmas = date(2025, 12, 25)
    _store_h4(conn, pair.id, christmas)
    answer = client.get(
        "/v1/bars",
        params={"symbol": "x:btcusd", "timeframe": "h4", "start": "2025-12-25T00:00:00Z",
                "end": "2025-12-25T23:59:59Z"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbol"] == "X:BTCUSD"
    assert [b["ts"][11:16] for b in body["bars"]] == [
        "00:00", "04:00", "08:00", "12:00", "16:00", "20:00"
    ]  # fmt: skip
    coverage = client.get("/v1/coverage", params={"symbol": "X:BTCUSD", "timeframe": "h4"})
    assert coverage.status_code == 200, coverage.text
    report = coverage.json()
    # Now is 2026-03-20 16:00 UTC: the window is 2026-03-17 .. 2026-03-20, four UTC days.
    days = [date(2026, 3, 17) + timedelta(days=n) for n in range(4)]
    assert report["backfill_progress"]["total_slices"] == len(days)
    assert report["gaps"] == [
        {"start": days[0].isoformat(), "end": days[-1].isoformat(), "sessions": 4}
    ]


@pytest.mark.parametrize("ticker", ["X:", "X:BTC-USD!", "X:BTC"])
def test_malformed_pairs_are_invalid_symbols(client: TestClient, ticker: str) -> None:
    answer = client.get("/v1/coverage", params={"symbol": ticker, "timeframe": "h4"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "INVALID_SYMBOL"


def test_ensure_coverage_watches_the_pair_on_utc_days(
    client: TestClient, conn: psycopg.Connection
) -> None:
    answer = client.post(
        "/v1/ensure-coverage", json={"symbol": "x:ethusd", "timeframe": "d1", "window_days": 6}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["symbol"] == "X:ETHUSD" and report["status"] == "gaps_detected"
    # 2026-03-14 (a Saturday) .. 2026-03-20: seven UTC days, the weekend included.
    assert report["gaps"] == [{"start": "2026-03-14", "end": "2026-03-20", "sessions": 7}]
    (row,) = watchlist.list_symbols(conn)
    assert (row.ticker, row.is_active, row.window_days) == ("X:ETHUSD", True, 6)


@pytest.mark.parametrize("timeframe", ["w1", "mo1"])
def test_a_pair_has_no_weekly_or_monthly_coverage(
    client: TestClient, conn: psycopg.Connection, timeframe: str
) -> None:
    answer = client.post(
        "/v1/ensure-coverage",
        json={"symbol": "X:ETHUSD", "timeframe": timeframe, "window_days": 6},
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_TIMEFRAME" and f"no {timeframe} bars" in error["message"]
    assert watchlist.list_symbols(conn) == []  # refused before anything changed
