"""The `symbols.ticker` CHECK (migration 0014) takes the same crypto pairs as the program;
crypto pairs are no split-check candidates."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from swiftbolt_pipeline.core.models import InvalidInput, normalize_ticker
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.corporate_actions import due_for_check


@pytest.mark.parametrize(
    "ticker",
    ["X:BTCUSD", "X:ETHBTC", "X:BTCUSDT", "X:1INCHUSD", "X:ABCDEFGHIJUSDC", "X:BTC", "X:",
     "X:BTC-USD", "X:ABCDEFGHIJKUSD", "X:USD", "AAPL", "BRK.B"],
)  # fmt: skip
def test_database_and_program_agree_on_tickers(conn: psycopg.Connection, ticker: str) -> None:
    try:
        program = normalize_ticker(ticker) == ticker
    except InvalidInput:
        program = False
    try:
        with conn.transaction():
            conn.execute("INSERT INTO symbols (ticker, is_active) VALUES (%s, false)", (ticker,))
        database = True
    except psycopg.errors.CheckViolation:
        database = False
    conn.rollback()
    assert database == program
    expected_valid = ticker in {
        "X:BTCUSD", "X:ETHBTC", "X:BTCUSDT", "X:1INCHUSD", "X:ABCDEFGHIJUSDC", "AAPL", "BRK.B"
    }  # fmt: skip
    assert program == expected_valid


def test_crypto_pairs_are_never_due_for_a_split_check(conn: psycopg.Connection) -> None:
    watchlist.add(conn, ["AAPL", "X:BTCUSD"])
    due = due_for_check(conn, datetime(2026, 3, 20, tzinfo=UTC), limit=10)
    assert [d.ticker for d in due] == ["AAPL"]
