"""Raw table work the benchmark measures the writer against: bulk COPY of prepared rows (binary,
the fastest form PostgreSQL takes, as the writer sends them) into `ohlc_bars_v2` or into a
scratch copy of it, and the resets between repeats. Only the benchmark uses these."""

from __future__ import annotations

from datetime import date, datetime

import psycopg
from psycopg import sql

from swiftbolt_pipeline.storage import bar_copy

BARS = "ohlc_bars_v2"
# A copy of `ohlc_bars_v2` (same indexes, same foreign key) for the raw COPY baseline.
SCRATCH_BARS = "bench_raw_copy"


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
    conn.execute("DELETE FROM ohlc_bars_v2 WHERE symbol_id = ANY(%s::int[])", (symbol_ids,))
    conn.commit()
    conn.execute("CHECKPOINT")
    conn.commit()


def copy_bars(conn: psycopg.Connection, table: str, data: bytes) -> None:
    """COPY a binary stream of `bar_copy.COLUMNS` into `table` and commit."""
    with conn.cursor().copy(bar_copy.copy_statement(table)) as copy:
        copy.write(data)
    conn.commit()


def analyze_bars(conn: psycopg.Connection) -> None:
    conn.execute("ANALYZE ohlc_bars_v2")
    conn.execute("ANALYZE bar_sessions")
    conn.execute("ANALYZE confirmed_sessions")
    conn.commit()


def confirm_stored_sessions(
    conn: psycopg.Connection, symbol_ids: list[int], timeframe: str, before: date
) -> None:
    """Record every stored session of `timeframe` before `before` as the history provider's
    whole answer (what a fetch records), so a synthetic archive is complete by the coverage
    rules; commits."""
    conn.execute(
        """INSERT INTO confirmed_sessions (symbol_id, timeframe, day, bars, provider)
           SELECT symbol_id, timeframe, day, bars, 'polygon' FROM bar_sessions
            WHERE symbol_id = ANY(%s::int[]) AND timeframe = %s AND day < %s
           ON CONFLICT (symbol_id, timeframe, day) DO UPDATE SET bars = EXCLUDED.bars""",
        (symbol_ids, timeframe, before),
    )
    conn.commit()


# Every session's m15, h1, h4 and d1 bars (a full day's counts), generated in primary-key order
# so the index grows at its right edge, as daily appends make it grow in production.
_SYNTHETIC_HISTORY = """
INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close, volume, vwap,
                          trade_count, provider, is_intraday)
SELECT s.id, f.timeframe, o.ts + f.step * g.k,
       100 + g.k %% 7, 101 + g.k %% 7, 99 + g.k %% 7, 100.5 + g.k %% 7, 1000 + g.k, 100.2, 10,
       'polygon', false
  FROM unnest(%(ids)s::int[]) AS s (id)
 CROSS JOIN (VALUES ('d1', interval '0', 1), ('h1', interval '1 hour', 7),
                    ('h4', interval '4 hours', 2), ('m15', interval '15 minutes', 26))
       AS f (timeframe, step, n)
 CROSS JOIN unnest(%(opens)s::timestamptz[]) AS o (ts)
 CROSS JOIN LATERAL generate_series(0, f.n - 1) AS g (k)
 ORDER BY 1, 2, 3
"""
SYNTHETIC_BARS_PER_SESSION = 1 + 7 + 2 + 26


def fill_synthetic_history(
    conn: psycopg.Connection, symbol_ids: list[int], opens: list[datetime]
) -> int:
    """Insert every session's bars for `symbol_ids` (session opens in UTC) and commit; returns
    the rows written. Every trigger fires as for any writer (the foreign key, `bar_sessions`)."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        cur = conn.execute(_SYNTHETIC_HISTORY, {"ids": symbol_ids, "opens": opens})
    return cur.rowcount


def table_size(conn: psycopg.Connection) -> tuple[int, int, int]:
    """(rows as ANALYZE estimates them, heap bytes, index bytes) of `ohlc_bars_v2`."""
    row = conn.execute(
        """SELECT c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid)
             FROM pg_class c WHERE c.oid = 'ohlc_bars_v2'::regclass"""
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def explain_chart(
    conn: psycopg.Connection, ticker: str, timeframe: str, start: datetime, end: datetime
) -> str:
    """The executed plan of `get_chart_data_v2` (a SQL function the planner inlines)."""
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM get_chart_data_v2(%s, %s, %s, %s)",
        (ticker, timeframe, start, end),
    ).fetchall()
    return "\n".join(row[0] for row in rows)
