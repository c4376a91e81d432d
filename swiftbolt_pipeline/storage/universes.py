"""The `universes` and `universe_members` tables: named symbol lists for universe mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.core.universe import UNKNOWN_UNIVERSE
from swiftbolt_pipeline.storage import watchlist


@dataclass(frozen=True)
class Universe:
    name: str
    members: int
    updated_at: datetime
    # Members whose last fetch failed (e.g. SYMBOL_NOT_FOUND).
    failing: int


@dataclass(frozen=True)
class MemberOutcome:
    symbol_id: int
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class MemberChange:
    members: int
    added: int
    removed: int


def set_members(conn: psycopg.Connection, name: str, tickers: list[str]) -> MemberChange:
    """Create `name` or replace its members with `tickers` (already normalized), in one
    transaction. New tickers get inactive `symbols` rows: they stay off the watchlist."""
    with conn.transaction():
        ids = watchlist.ensure(conn, tickers)
        conn.execute(
            """INSERT INTO universes (name) VALUES (%s)
               ON CONFLICT (name) DO UPDATE SET updated_at = now()""",
            (name,),
        )
        removed = conn.execute(
            """DELETE FROM universe_members
               WHERE universe = %s AND NOT (symbol_id = ANY(%s::int[]))""",
            (name, list(ids.values())),
        ).rowcount
        added = conn.execute(
            """INSERT INTO universe_members (universe, symbol_id)
               SELECT %s, id FROM unnest(%s::integer[]) id
               ON CONFLICT DO NOTHING""",
            (name, list(ids.values())),
        ).rowcount
    return MemberChange(len(ids), added, removed)


def list_universes(conn: psycopg.Connection) -> list[Universe]:
    rows = conn.execute(
        """SELECT u.name, count(m.symbol_id), u.updated_at,
                  count(m.symbol_id) FILTER (WHERE m.last_error_code IS NOT NULL)
           FROM universes u LEFT JOIN universe_members m ON m.universe = u.name
           GROUP BY u.name, u.updated_at ORDER BY u.name"""
    ).fetchall()
    return [Universe(*row) for row in rows]


def members(conn: psycopg.Connection, name: str) -> dict[str, int]:
    """Ticker -> symbol id of every member, by ticker; UNKNOWN_UNIVERSE when `name` is none."""
    if conn.execute("SELECT 1 FROM universes WHERE name = %s", (name,)).fetchone() is None:
        raise InvalidInput(
            UNKNOWN_UNIVERSE, f"no universe named {name!r}; create it with `swiftbolt universe set`"
        )
    rows = conn.execute(
        """SELECT s.ticker, s.id FROM universe_members m JOIN symbols s ON s.id = m.symbol_id
           WHERE m.universe = %s ORDER BY s.ticker""",
        (name,),
    ).fetchall()
    return dict(rows)


def record_outcomes(
    conn: psycopg.Connection,
    name: str,
    outcomes: list[MemberOutcome],
    *,
    run_id: str,
    first: date,
    last: date,
    now: datetime,
) -> None:
    """Each member's outcome of run `run_id` over `first`..`last` (in the caller's
    transaction)."""
    with conn.cursor() as cur:
        cur.executemany(
            """UPDATE universe_members
               SET last_run_id = %s, last_range_start = %s, last_range_end = %s,
                   last_error_code = %s, last_error_message = %s, last_fetched_at = %s
               WHERE universe = %s AND symbol_id = %s""",
            [
                (run_id, first, last, o.error_code, o.error_message, now, name, o.symbol_id)
                for o in outcomes
            ],
        )


def failing(conn: psycopg.Connection, name: str) -> dict[str, str]:
    """Ticker -> `[CODE] message` of the members whose last fetch failed."""
    rows = conn.execute(
        """SELECT s.ticker, '[' || m.last_error_code || '] ' || coalesce(m.last_error_message, '')
           FROM universe_members m JOIN symbols s ON s.id = m.symbol_id
           WHERE m.universe = %s AND m.last_error_code IS NOT NULL ORDER BY s.ticker""",
        (name,),
    ).fetchall()
    return dict(rows)


def windows_done(conn: psycopg.Connection, run_id: str) -> int:
    """Member request windows run `run_id` has finished (stored or failed): a progress count
    that reads the ledger, not the bars (cheap for thousands of members)."""
    row = conn.execute(
        "SELECT count(*) FROM job_runs WHERE run_id = %s AND status <> 'running'", (run_id,)
    ).fetchone()
    return int(row[0]) if row else 0
