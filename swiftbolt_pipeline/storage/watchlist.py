"""The `symbols` table: the watchlist and the ids bars hang off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from swiftbolt_pipeline.core.alerts import AlertKind
from swiftbolt_pipeline.core.errors import SYMBOL_NOT_FOUND
from swiftbolt_pipeline.core.models import CRYPTO_PREFIX, InvalidInput
from swiftbolt_pipeline.storage import alerts

_COLUMNS = sql.SQL(", ").join(
    map(
        sql.Identifier,
        (
            "id", "ticker", "is_active", "window_days", "priority", "added_at", "parked_reason",
            "parked_at", "not_found_streak", "retry_after", "m5",
        ),
    )
)  # fmt: skip
# SYMBOL_NOT_FOUND answers in a row that park a symbol: an unknown ticker costs its window's
# requests once and then one probe per answer; a full-day halt answers once and then trades.
PARK_AFTER = 3

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
    # Why the symbol was parked (inactive after answering SYMBOL_NOT_FOUND again and again).
    parked_reason: str | None = None
    parked_at: datetime | None = None
    # SYMBOL_NOT_FOUND answers in a row: from the first one on, only a probe is requested.
    not_found_streak: int = 0
    # A failed fetch holds the gap sensor off the symbol until then (the program's clock).
    retry_after: datetime | None = None
    # Opted in to 5-minute bars (m5) beside m15.
    m5: bool = False


def add(
    conn: psycopg.Connection,
    tickers: list[str],
    *,
    window_days: int = 730,
    priority: int = 0,
    m5: bool | None = None,
) -> list[WatchedSymbol]:
    """Add or re-activate tickers (already normalized); settings of existing rows are updated.
    `m5`: opt in (True) or out (False) of 5-minute bars; None keeps a row's choice (off for a
    new one)."""
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise InvalidInput(
            "INVALID_RANGE", f"window_days must be 1..{MAX_WINDOW_DAYS} days, not {window_days}"
        )
    with conn.transaction():
        rows = [
            conn.execute(
                sql.SQL(
                    """INSERT INTO symbols (ticker, window_days, priority, m5)
                       VALUES (%s, %s, %s, coalesce(%s, false))
                       ON CONFLICT (ticker) DO UPDATE
                       SET is_active = true, window_days = EXCLUDED.window_days,
                           priority = EXCLUDED.priority, parked_reason = NULL, parked_at = NULL,
                           not_found_streak = 0, retry_after = NULL,
                           m5 = coalesce(%s, symbols.m5)
                       RETURNING {}"""
                ).format(_COLUMNS),
                (ticker, window_days, priority, m5, m5),
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


def opt_out_m5(conn: psycopg.Connection, tickers: list[str]) -> list[str]:
    """Stop 5-minute bars for tickers (they stay watched; stored m5 bars stay). Returns those
    that were opted in."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE symbols SET m5 = false WHERE ticker = ANY(%s) AND m5 RETURNING ticker",
            (tickers,),
        ).fetchall()
    return sorted(row[0] for row in rows)


def m5_symbols(conn: psycopg.Connection, *, everyone: bool = False) -> list[WatchedSymbol]:
    """Active stocks that get 5-minute bars: those opted in, or all of them with `everyone`
    (SWIFTBOLT_M5). Crypto pairs have no m5. In the order of `list_symbols`."""
    return [
        s
        for s in list_symbols(conn)
        if (s.m5 or everyone) and not s.ticker.startswith(CRYPTO_PREFIX)
    ]


def list_symbols(conn: psycopg.Connection, *, active_only: bool = True) -> list[WatchedSymbol]:
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM symbols WHERE is_active OR NOT %s ORDER BY priority DESC, ticker"
        ).format(_COLUMNS),
        (active_only,),
    ).fetchall()
    return [WatchedSymbol(*row) for row in rows]


def lookup(conn: psycopg.Connection, ticker: str) -> WatchedSymbol | None:
    """The row of `ticker`, active or not, if the archive has one."""
    row = conn.execute(
        sql.SQL("SELECT {} FROM symbols WHERE ticker = %s").format(_COLUMNS), (ticker,)
    ).fetchone()
    return WatchedSymbol(*row) if row else None


def parked(conn: psycopg.Connection) -> list[WatchedSymbol]:
    """Symbols parked as dead, most recent first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM symbols WHERE parked_at IS NOT NULL ORDER BY parked_at DESC"
        ).format(_COLUMNS)
    ).fetchall()
    return [WatchedSymbol(*row) for row in rows]


def record_outcome(
    conn: psycopg.Connection,
    symbol_id: int,
    *,
    error_code: str | None,
    error_message: str = "",
    now: datetime,
    retry_after: datetime,
) -> str | None:
    """Note how a symbol's fetch ended (in the caller's transaction). Success clears the
    failure state; a failure holds the gap sensor off until `retry_after`; the
    PARK_AFTER-th SYMBOL_NOT_FOUND in a row parks the symbol. Returns the parking reason
    when this call parked it."""
    if error_code is None:
        conn.execute(
            """UPDATE symbols SET not_found_streak = 0, retry_after = NULL
               WHERE id = %s AND (not_found_streak > 0 OR retry_after IS NOT NULL)""",
            (symbol_id,),
        )
        return None
    row = conn.execute(
        """UPDATE symbols
           SET not_found_streak = CASE WHEN %(code)s = %(not_found)s
                                       THEN not_found_streak + 1 ELSE not_found_streak END,
               retry_after = %(retry_after)s
           WHERE id = %(id)s RETURNING not_found_streak, is_active""",
        {
            "code": error_code,
            "not_found": SYMBOL_NOT_FOUND,
            "retry_after": retry_after,
            "id": symbol_id,
        },
    ).fetchone()
    if row is None or row[0] < PARK_AFTER or not row[1]:
        return None
    reason = f"{SYMBOL_NOT_FOUND}: no bars served {row[0]} times in a row (last: {error_message})"
    parked = conn.execute(
        """UPDATE symbols SET is_active = false, parked_reason = %s, parked_at = %s
           WHERE id = %s AND is_active RETURNING ticker""",
        (reason, now, symbol_id),
    ).fetchone()
    if parked is None:
        return None
    alerts.record(conn, AlertKind.SYMBOL_PARKED, parked[0], reason)
    return reason
