"""Migration 0005: the database refuses a bar priced at or below zero, and an archive that
already holds one still migrates."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from swiftbolt_pipeline.storage.migrate import migrate
from swiftbolt_pipeline_tests.storage.helpers import fresh_database

INSERT = """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close, volume,
                                      provider)
            VALUES (%s, 'm15', %s, %s, %s, %s, %s, 100, 'polygon')"""
TS = datetime(2025, 6, 2, 13, 30, tzinfo=UTC)


def _symbol(conn: psycopg.Connection) -> int:
    row = conn.execute("INSERT INTO symbols (ticker) VALUES ('SPY') RETURNING id").fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    "prices",
    [(0.0, 1.0, 0.0, 0.5), (-2.0, -1.0, -3.0, -2.5), (1.0, 1.0, 1.0, 0.0)],
    ids=["zero-low", "all-negative", "zero-close"],
)
def test_non_positive_prices_are_refused(
    conn: psycopg.Connection, prices: tuple[float, ...]
) -> None:
    symbol_id = _symbol(conn)
    conn.commit()
    with pytest.raises(psycopg.errors.CheckViolation, match="positive_prices"):
        conn.execute(INSERT, (symbol_id, TS, *prices))
    conn.rollback()
    conn.execute(INSERT, (symbol_id, TS, 0.01, 0.02, 0.01, 0.02))
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (1,)


def test_an_archive_holding_a_bad_row_still_migrates(database_url: str) -> None:
    with fresh_database(database_url) as url, psycopg.connect(url) as conn:
        migrate(conn)
        # The archive as it was before 0005, with a zero price already stored.
        conn.execute("ALTER TABLE ohlc_bars_v2 DROP CONSTRAINT ohlc_bars_v2_positive_prices")
        conn.execute("DELETE FROM schema_migrations WHERE name LIKE '0005%'")
        conn.execute(INSERT, (_symbol(conn), TS, 0.0, 1.0, 0.0, 0.5))
        conn.commit()
        assert [name for name in migrate(conn) if name.startswith("0005")] != []
        row = conn.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'ohlc_bars_v2_positive_prices'"
        ).fetchone()
        assert row == (False,)  # in force for new rows, the old one kept for a refetch
        assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (1,)
