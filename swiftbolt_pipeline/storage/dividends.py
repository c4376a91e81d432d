"""`dividends`: the cash dividends of each checked symbol, as last reported by the provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import psycopg


@dataclass(frozen=True)
class DividendRow:
    symbol: str
    ex_date: date
    record_date: date | None
    pay_date: date | None
    cash_amount: Decimal
    currency: str | None
    frequency: int | None
    type: str


def replace_dividends(
    conn: psycopg.Connection,
    symbol: str,
    rows: Sequence[DividendRow],
    *,
    fetched_at: datetime,
) -> None:
    """Make `rows` (a complete fetch) the symbol's dividends, in one transaction: a re-fetch
    changes nothing but `fetched_at`, and a dividend the provider withdrew is dropped."""
    with conn.transaction():
        conn.execute("DELETE FROM dividends WHERE symbol = %s", (symbol,))
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO dividends (symbol, ex_date, type, record_date, pay_date,
                                          cash_amount, currency, frequency, fetched_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                [
                    (symbol, r.ex_date, r.type, r.record_date, r.pay_date, r.cash_amount,
                     r.currency, r.frequency, fetched_at)
                    for r in rows
                ],
            )  # fmt: skip


def dividends(conn: psycopg.Connection, symbol: str) -> list[DividendRow]:
    """The symbol's dividends by ex-date."""
    rows = conn.execute(
        """SELECT symbol, ex_date, record_date, pay_date, cash_amount, currency, frequency, type
             FROM dividends WHERE symbol = %s ORDER BY ex_date, type""",
        (symbol,),
    ).fetchall()
    return [DividendRow(*row) for row in rows]


@dataclass(frozen=True)
class DividendSummary:
    count: int
    last_ex_date: date
    last_cash_amount: Decimal
    currency: str | None


def summaries(conn: psycopg.Connection) -> dict[str, DividendSummary]:
    """Per symbol with dividends: how many, and the latest ex-date's (regular first) amount."""
    rows = conn.execute(
        """SELECT DISTINCT ON (symbol) symbol, count(*) OVER (PARTITION BY symbol),
                  ex_date, cash_amount, currency
             FROM dividends
            ORDER BY symbol, ex_date DESC, type = 'CD' DESC, type"""
    ).fetchall()
    return {row[0]: DividendSummary(*row[1:]) for row in rows}
