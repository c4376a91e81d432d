"""The `universes` and `universe_members` tables: named symbol lists for universe mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.core.universe import UNKNOWN_UNIVERSE
from swiftbolt_pipeline.storage import watchlist


@dataclass(frozen=True)
class Universe:
    name: str
    members: int
    updated_at: datetime


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
               WHERE universe = %s AND NOT (symbol_id = ANY(%s))""",
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
        """SELECT u.name, count(m.symbol_id), u.updated_at
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
