"""Raw table work the benchmark measures the writer against: bulk COPY of prepared CSV rows into
`ohlc_bars_v2` or into a scratch copy of it, and the resets between repeats. Only the benchmark
uses these."""

from __future__ import annotations

import psycopg
from psycopg import sql

BARS = "ohlc_bars_v2"
# A copy of `ohlc_bars_v2` (same indexes, same foreign key) for the raw COPY baseline.
SCRATCH_BARS = "bench_raw_copy"
_COLUMNS = sql.SQL(", ").join(
    map(
        sql.Identifier,
        (
            "symbol_id", "timeframe", "ts", "open", "high", "low", "close", "volume", "vwap",
            "trade_count", "provider", "is_intraday",
        ),
    )
)  # fmt: skip


def create_scratch_bars(conn: psycopg.Connection) -> None:
    scratch = sql.Identifier(SCRATCH_BARS)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(scratch))
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE ohlc_bars_v2 INCLUDING ALL)").format(scratch))
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (symbol_id) REFERENCES symbols (id)").format(
            scratch
        )
    )
    conn.commit()


def drop_scratch_bars(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCRATCH_BARS)))
    conn.commit()


def reset_bars(conn: psycopg.Connection, symbol_ids: list[int]) -> None:
    """Empty the scratch table and the symbols' stored bars, then checkpoint, so every repeat
    starts from the same state on disk."""
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(SCRATCH_BARS)))
    conn.execute("DELETE FROM ohlc_bars_v2 WHERE symbol_id = ANY(%s)", (symbol_ids,))
    conn.commit()
    conn.execute("CHECKPOINT")
    conn.commit()


def copy_bars_csv(conn: psycopg.Connection, table: str, data: bytes) -> None:
    """COPY CSV rows (all bar columns, in table order) into `table` and commit."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), _COLUMNS
    )
    with conn.cursor().copy(statement) as copy:
        copy.write(data)
    conn.commit()


def analyze_bars(conn: psycopg.Connection) -> None:
    conn.execute("ANALYZE ohlc_bars_v2")
    conn.commit()
