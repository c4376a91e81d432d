"""The `symbols.ticker` CHECK (migration 0014) takes the same crypto pairs as the program."""

from __future__ import annotations

import psycopg
import pytest

from swiftbolt_pipeline.core.models import InvalidInput, normalize_ticker


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
