"""The `symbols` table: the watchlist and the ids bars hang off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from swiftbolt_pipeline.core.models import InvalidInput

# A window is calendar days back from today; ten years is far beyond any archive (the
# `symbols.window_days` CHECK holds the same bound).
MAX_WINDOW_DAYS = 3660


@dataclass(frozen=True)
class WatchedSymbol:
    id: int
    ticker: str
    is_active: bool
    window_days: int
    priority: int
    added_at: datetime


def add(
    conn: psycopg.Connection, tickers: list[str], *, window_days: int = 730, priority: int = 0
) -> list[WatchedSymbol]:
    """Add or re-activate tickers (already normalized); settings of existing rows are updated."""
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise InvalidInput(
            "INVALID_RANGE", f"window_days must be 1..{MAX_WINDOW_DAYS} days, not {window_days}"
        )
    with conn.transaction():
        rows = [
            conn.execute(
                """INSERT INTO symbols (ticker, window_days, priority) VALUES (%s, %s, %s)
                    ON CONFLICT (ticker) DO UPDATE
                    SET is_active = true, window_days = EXCLUDED.window_days,
                        priority = EXCLUDED.priority
                    RETURNING id, ticker, is_active, window_days, priority, added_at""",
                (ticker, window_days, priority),
            ).fetchone()
            for ticker in tickers
        ]
    return [WatchedSymbol(*row) for row in rows if row]


def ensure(conn: psycopg.Connection, tickers: list[str]) -> dict[str, int]:
    """Ids for tickers, inserting unknown ones as inactive rows (bars need a symbol id, but a
    one-off backfill must not put a symbol on the watchlist)."""
    with conn.transaction():
        conn.execute(
            """INSERT INTO symbols (ticker, is_active) SELECT t, false FROM unnest(%s::text[]) t
               ON CONFLICT (ticker) DO NOTHING""",
            (tickers,),
        )
        rows = conn.execute(
            "SELECT ticker, id FROM symbols WHERE ticker = ANY(%s)", (tickers,)
        ).fetchall()
    return dict(rows)


def remove(conn: psycopg.Connection, tickers: list[str]) -> list[str]:
    """Deactivate tickers; their bars stay in the archive. Returns the tickers that were active."""
    with conn.transaction():
        rows = conn.execute(
            """UPDATE symbols SET is_active = false
               WHERE ticker = ANY(%s) AND is_active RETURNING ticker""",
            (tickers,),
        ).fetchall()
    return sorted(row[0] for row in rows)


def list_symbols(conn: psycopg.Connection, *, active_only: bool = True) -> list[WatchedSymbol]:
    rows = conn.execute(
        """SELECT id, ticker, is_active, window_days, priority, added_at FROM symbols
           WHERE is_active OR NOT %s ORDER BY priority DESC, ticker""",
        (active_only,),
    ).fetchall()
    return [WatchedSymbol(*row) for row in rows]
