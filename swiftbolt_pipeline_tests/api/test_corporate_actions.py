"""`GET /v1/corporate-actions`: the stored splits and dividends of a symbol, by date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
from starlette.testclient import TestClient

from swiftbolt_pipeline.storage import corporate_actions as ca_store
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.dividends import DividendRow, replace_dividends

NOW = datetime(2026, 3, 20, 16, tzinfo=UTC)


def _dividend(ex: date, cash: str, kind: str = "CD", **extra: object) -> DividendRow:
    fields: dict = {"record_date": ex, "pay_date": None, "currency": "USD", "frequency": 4}
    fields.update(extra)
    return DividendRow("SPY", ex, cash_amount=Decimal(cash), type=kind, **fields)


def test_splits_and_dividends_by_date(client: TestClient, conn: psycopg.Connection) -> None:
    ca_store.record_splits(
        conn, "SPY", [(date(2025, 11, 12), 1, 4), (date(2020, 8, 31), 2, 3)], checked_at=NOW
    )
    replace_dividends(
        conn,
        "SPY",
        [
            _dividend(date(2025, 12, 19), "1.9937", pay_date=date(2026, 1, 30)),
            _dividend(date(2025, 6, 20), "1.7611", currency=None, frequency=None),
            _dividend(date(2025, 12, 19), "0.5", "SC", frequency=0),
        ],
        fetched_at=NOW,
    )
    conn.commit()
    r = client.get("/v1/corporate-actions", params={"symbol": "spy"})
    assert r.status_code == 200
    assert r.json() == {
        "symbol": "SPY",
        "splits": [
            {"execution_date": "2020-08-31", "split_from": 2.0, "split_to": 3.0},
            {"execution_date": "2025-11-12", "split_from": 1.0, "split_to": 4.0},
        ],
        "dividends": [
            {"ex_date": "2025-06-20", "record_date": "2025-06-20", "pay_date": None,
             "cash_amount": 1.7611, "currency": None, "frequency": None, "type": "CD"},
            {"ex_date": "2025-12-19", "record_date": "2025-12-19", "pay_date": "2026-01-30",
             "cash_amount": 1.9937, "currency": "USD", "frequency": 4, "type": "CD"},
            {"ex_date": "2025-12-19", "record_date": "2025-12-19", "pay_date": None,
             "cash_amount": 0.5, "currency": "USD", "frequency": 0, "type": "SC"},
        ],
    }  # fmt: skip


def test_unknown_and_known_symbols_without_actions(
    client: TestClient, conn: psycopg.Connection
) -> None:
    r = client.get("/v1/corporate-actions", params={"symbol": "NOPE"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "SYMBOL_NOT_FOUND"
    watchlist.add(conn, ["NOPE"])
    conn.commit()
    r = client.get("/v1/corporate-actions", params={"symbol": "NOPE"})
    assert r.status_code == 200
    assert r.json() == {"symbol": "NOPE", "splits": [], "dividends": []}
    bad = client.get("/v1/corporate-actions", params={"symbol": "not a ticker"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_SYMBOL"
