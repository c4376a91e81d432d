"""The operations simulation's audit reads: plain SQL over the tables, sharing no code with the
pipeline's own reads and writes, so the audit checks what is stored, not what the pipeline's
code believes it stored."""

from __future__ import annotations

from datetime import date

import polars as pl
import psycopg


def stored_bars(conn: psycopg.Connection, ticker: str) -> pl.DataFrame:
    """Every stored bar of `ticker`, with its exchange day and its start in epoch ms."""
    rows = conn.execute(
        """SELECT b.timeframe, (b.ts AT TIME ZONE 'America/New_York')::date,
                  (extract(epoch FROM b.ts) * 1000)::bigint, b.open, b.high, b.low, b.close,
                  b.volume, b.vwap, b.trade_count, b.provider, b.is_intraday
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s ORDER BY 1, 3""",
        (ticker,),
    ).fetchall()
    schema = {
        "timeframe": pl.String,
        "day": pl.Date,
        "ts_ms": pl.Int64,
        "open": pl.Float64,
        "high": pl.Float64,
        "low": pl.Float64,
        "close": pl.Float64,
        "volume": pl.Int64,
        "vwap": pl.Float64,
        "trade_count": pl.Int64,
        "provider": pl.String,
        "is_intraday": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def unconfigured_provider_rows(
    conn: psycopg.Connection, *, tradier_since: date
) -> list[tuple[str, str, date, str, int]]:
    """(ticker, timeframe, day, provider, rows) of bars from Alpaca, and from Tradier for
    sessions from `tradier_since` on."""
    rows = conn.execute(
        """SELECT s.ticker, b.timeframe, (b.ts AT TIME ZONE 'America/New_York')::date AS day,
                  b.provider, count(*)
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE b.provider = 'alpaca'
              OR (b.provider = 'tradier'
                  AND (b.ts AT TIME ZONE 'America/New_York')::date >= %s)
           GROUP BY 1, 2, 3, 4 ORDER BY 3, 1, 2""",
        (tradier_since,),
    ).fetchall()
    return [tuple(row) for row in rows]


def parked_symbols(conn: psycopg.Connection) -> list[tuple[str, str | None, str | None]]:
    """(ticker, reason, parked_at) of parked symbols, when the schema records parking."""
    cols = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'symbols'"
        )
    }
    if "parked_reason" not in cols:
        return []
    query = (
        "SELECT ticker, parked_reason, parked_at::text FROM symbols"
        if "parked_at" in cols
        else "SELECT ticker, parked_reason, NULL FROM symbols"
    )
    rows = conn.execute(query + " WHERE parked_reason IS NOT NULL ORDER BY ticker").fetchall()
    return [(t, r, a) for t, r, a in rows]
