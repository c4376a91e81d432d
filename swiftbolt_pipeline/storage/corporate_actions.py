"""`corporate_actions` and `corporate_action_checks`: known splits, when each watched symbol's
splits and dividends were last checked, and which stored bars a split made stale.

Staleness rule. Polygon serves split-adjusted bars, so a split executed on day E changes every
bar before E. A stored bar is stale when it starts before E and was fetched before the split's
`stale_before` instant:

* a split found on a symbol's first check (the baseline: an archive that predates this feature,
  or a symbol just added): `stale_before` = E at 00:00 exchange time, since the provider adjusts
  history when the split executes and bars fetched after that already carry it;
* a split that appears on a later check: `stale_before` = max(E, the moment we saw it), since a
  split published late (a provider correction) re-adjusts history only when it is published;
* a known split whose ratio changes is treated as newly seen.

A split with stale bars becomes one contiguous re-fetch range for its symbol (first to last stale
session); once no stale bar is left the split is settled and costs no more queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg

DAILY = timedelta(days=1)
RETRY_FAILED_AFTER = timedelta(hours=1)
REREQUEST_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class SplitRow:
    ticker: str
    execution_date: date
    split_from: float
    split_to: float
    first_seen_at: datetime
    stale_before: datetime
    refetch_requested_at: datetime | None
    settled_at: datetime | None

    @property
    def ratio(self) -> float:
        return self.split_to / self.split_from


@dataclass(frozen=True)
class DueSymbol:
    symbol_id: int
    ticker: str
    checked_at: datetime | None


@dataclass(frozen=True)
class Refetch:
    """Stored sessions of one symbol to fetch again because of these splits."""

    ticker: str
    symbol_id: int
    first_day: date
    last_day: date
    stale_days: int
    execution_dates: tuple[date, ...]


def due_for_check(
    conn: psycopg.Connection, now: datetime, *, limit: int, max_age: timedelta = DAILY
) -> list[DueSymbol]:
    """Active symbols whose splits were never checked, checked longer than `max_age` ago, or
    whose last check failed over an hour ago; never checked first, then oldest, priority.
    Crypto pairs (`X:` tickers) have no splits or dividends: never checked."""
    rows = conn.execute(
        """SELECT s.id, s.ticker, c.checked_at
             FROM symbols s
             LEFT JOIN corporate_action_checks c ON c.ticker = s.ticker
            WHERE s.is_active AND s.ticker NOT LIKE 'X:%%'
              AND (c.ticker IS NULL
                   OR (c.status = 'ok' AND c.checked_at <= %(now)s - %(max_age)s)
                   OR (c.status = 'failed' AND c.checked_at <= %(now)s - %(retry)s))
            ORDER BY c.checked_at NULLS FIRST, s.priority DESC, s.ticker
            LIMIT %(limit)s""",
        {"now": now, "max_age": max_age, "retry": RETRY_FAILED_AFTER, "limit": limit},
    ).fetchall()
    return [DueSymbol(*row) for row in rows]


def record_splits(
    conn: psycopg.Connection,
    ticker: str,
    splits: Sequence[tuple[date, float, float]],
    *,
    checked_at: datetime,
    dividends_found: int = 0,
) -> list[SplitRow]:
    """Store a successful check of `ticker` with the splits it found, as
    (execution_date, split_from, split_to), and the number of dividends it found. Returns the
    splits that are new (or whose ratio changed) since the last check. One transaction."""
    with conn.transaction():
        first_check = (
            conn.execute(
                "SELECT 1 FROM corporate_action_checks WHERE ticker = %s FOR UPDATE", (ticker,)
            ).fetchone()
            is None
        )
        changed: list[SplitRow] = []
        for execution_date, split_from, split_to in splits:
            row = conn.execute(
                """INSERT INTO corporate_actions AS ca
                          (ticker, kind, execution_date, split_from, split_to, stale_before)
                   VALUES (%(ticker)s, 'split', %(day)s, %(from)s, %(to)s,
                           CASE WHEN %(first)s
                                THEN %(day)s::date::timestamp AT TIME ZONE 'America/New_York'
                                ELSE greatest(
                                    %(day)s::date::timestamp AT TIME ZONE 'America/New_York',
                                    now())
                           END)
                   ON CONFLICT (ticker, kind, execution_date) DO UPDATE
                      SET split_from = EXCLUDED.split_from, split_to = EXCLUDED.split_to,
                          first_seen_at = now(),
                          stale_before = greatest(
                              ca.execution_date::timestamp AT TIME ZONE 'America/New_York',
                              now()),
                          refetch_requested_at = NULL, settled_at = NULL
                    WHERE (ca.split_from, ca.split_to)
                          IS DISTINCT FROM (EXCLUDED.split_from, EXCLUDED.split_to)
                   RETURNING ca.ticker, ca.execution_date, ca.split_from, ca.split_to,
                             ca.first_seen_at, ca.stale_before, ca.refetch_requested_at,
                             ca.settled_at""",
                {
                    "ticker": ticker,
                    "day": execution_date,
                    "from": Decimal(str(split_from)),
                    "to": Decimal(str(split_to)),
                    "first": first_check,
                },
            ).fetchone()
            if row is not None:
                changed.append(_split(row))
        conn.execute(
            """INSERT INTO corporate_action_checks
                      (ticker, checked_at, status, splits_found, dividends_found)
               VALUES (%s, %s, 'ok', %s, %s)
               ON CONFLICT (ticker) DO UPDATE
                  SET checked_at = EXCLUDED.checked_at, status = 'ok',
                      splits_found = EXCLUDED.splits_found,
                      dividends_found = EXCLUDED.dividends_found,
                      error_code = NULL, error_message = NULL""",
            (ticker, checked_at, len(splits), dividends_found),
        )
    return changed


def record_failure(
    conn: psycopg.Connection, ticker: str, *, checked_at: datetime, code: str, message: str
) -> None:
    """A failed check: retried after RETRY_FAILED_AFTER instead of a day. A symbol that never
    succeeded keeps counting as unchecked for the baseline rule."""
    with conn.transaction():
        conn.execute(
            """INSERT INTO corporate_action_checks
                      (ticker, checked_at, status, error_code, error_message)
               VALUES (%s, %s, 'failed', %s, %s)
               ON CONFLICT (ticker) DO UPDATE
                  SET checked_at = EXCLUDED.checked_at, status = 'failed',
                      error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message""",
            (ticker, checked_at, code, message[:500]),
        )


def _split(row: tuple) -> SplitRow:
    ticker, day, split_from, split_to, first_seen, stale_before, requested, settled = row
    return SplitRow(
        ticker,
        day,
        float(split_from),
        float(split_to),
        first_seen,
        stale_before,
        requested,
        settled,
    )


def splits(conn: psycopg.Connection, ticker: str | None = None) -> list[SplitRow]:
    rows = conn.execute(
        """SELECT ticker, execution_date, split_from, split_to, first_seen_at, stale_before,
                  refetch_requested_at, settled_at
             FROM corporate_actions
            WHERE kind = 'split' AND (%(ticker)s::text IS NULL OR ticker = %(ticker)s)
            ORDER BY ticker, execution_date""",
        {"ticker": ticker},
    ).fetchall()
    return [_split(row) for row in rows]


def pending_refetches(
    conn: psycopg.Connection,
    today: date,
    history_start: date,
    *,
    retry_after: timedelta = REREQUEST_AFTER,
) -> list[Refetch]:
    """Per active symbol: the contiguous range of stored sessions (within the history window)
    that executed, unsettled splits made stale, for one re-fetch run. A split whose re-fetch
    was requested less than `retry_after` ago is left out: if its run failed or the provider
    no longer serves some of those sessions, it is tried again once a day, not every tick."""
    rows = conn.execute(
        """SELECT ca.ticker, s.id, min(stale.day), max(stale.day), count(DISTINCT stale.day),
                  array_agg(DISTINCT ca.execution_date ORDER BY ca.execution_date)
             FROM corporate_actions ca
             JOIN symbols s ON s.ticker = ca.ticker AND s.is_active
             CROSS JOIN LATERAL (
                 SELECT DISTINCT (b.ts AT TIME ZONE 'America/New_York')::date AS day
                   FROM ohlc_bars_v2 b
                  WHERE b.symbol_id = s.id AND b.timeframe = 'm15'
                    AND b.ts >= %(start)s::timestamp AT TIME ZONE 'America/New_York'
                    AND b.ts < ca.execution_date::timestamp AT TIME ZONE 'America/New_York'
                    AND b.fetched_at < ca.stale_before
             ) stale
            WHERE ca.kind = 'split' AND ca.settled_at IS NULL AND ca.execution_date <= %(today)s
              AND (ca.refetch_requested_at IS NULL
                   OR ca.refetch_requested_at <= now() - %(retry)s)
            GROUP BY ca.ticker, s.id
            ORDER BY ca.ticker""",
        {"today": today, "start": history_start, "retry": retry_after},
    ).fetchall()
    return [
        Refetch(ticker, symbol_id, first, last, int(days), tuple(dates))
        for ticker, symbol_id, first, last, days, dates in rows
    ]


def mark_requested(conn: psycopg.Connection, ticker: str, today: date) -> None:
    """Note that a re-fetch was requested for the open, executed splits of `ticker`."""
    with conn.transaction():
        conn.execute(
            """UPDATE corporate_actions SET refetch_requested_at = now()
               WHERE ticker = %s AND kind = 'split' AND settled_at IS NULL
                 AND execution_date <= %s""",
            (ticker, today),
        )


def settle(conn: psycopg.Connection, today: date, history_start: date) -> list[tuple[str, date]]:
    """Mark executed splits without stale bars in the history window as settled; returns
    (ticker, execution_date) of each."""
    with conn.transaction():
        rows = conn.execute(
            """UPDATE corporate_actions ca SET settled_at = now()
                WHERE ca.kind = 'split' AND ca.settled_at IS NULL
                  AND ca.execution_date <= %(today)s
                  AND NOT EXISTS (
                      SELECT 1 FROM symbols s JOIN ohlc_bars_v2 b ON b.symbol_id = s.id
                       WHERE s.ticker = ca.ticker AND b.timeframe = 'm15'
                         AND b.ts >= %(start)s::timestamp AT TIME ZONE 'America/New_York'
                         AND b.ts < ca.execution_date::timestamp AT TIME ZONE 'America/New_York'
                         AND b.fetched_at < ca.stale_before)
               RETURNING ca.ticker, ca.execution_date""",
            {"today": today, "start": history_start},
        ).fetchall()
    return [(ticker, day) for ticker, day in rows]
