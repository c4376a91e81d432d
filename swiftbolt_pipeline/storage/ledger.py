"""Cost ledger (`job_runs`) and resumable checkpoints (`provider_checkpoints`).

A `running` row belongs to the database session that inserted it (the table's defaults record
that session): keep the connection that called `start_fetch` open until `finish_fetch`. When
the session is gone, so is the process, and `abandon_orphans` marks the row `abandoned`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg


def start_fetch(
    conn: psycopg.Connection,
    *,
    run_id: str,
    provider: str,
    symbol: str,
    timeframe: str,
    first: date,
    last: date,
    expected_cost: int,
) -> int:
    """Open a `running` row owned by `conn`'s session; returns its id."""
    row = conn.execute(
        """INSERT INTO job_runs (run_id, provider, symbol, timeframe, range_start, range_end,
                                 status, expected_cost)
           VALUES (%s, %s, %s, %s, %s, %s, 'running', %s) RETURNING id""",
        (run_id, provider, symbol, timeframe, first, last, expected_cost),
    ).fetchone()
    assert row is not None
    return row[0]


def finish_fetch(
    conn: psycopg.Connection,
    fetch_id: int,
    *,
    actual_cost: int,
    rows_written: int,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    conn.execute(
        """UPDATE job_runs SET status = %s, actual_cost = %s, rows_written = %s,
                  error_code = %s, error_message = %s, finished_at = now()
           WHERE id = %s""",
        (
            "failed" if error_code else "success",
            actual_cost,
            rows_written,
            error_code,
            error_message,
            fetch_id,
        ),
    )


def abandon_orphans(conn: psycopg.Connection) -> int:
    """Mark `running` fetches whose owner session has ended `abandoned`; returns how many.

    Safe from any process on any host sharing the database, at any time: a live session's rows
    are never touched, and a fetch that does finish later (its process outlived a cut
    connection) records its real outcome over the mark. Commits (a savepoint when the
    caller's transaction is open)."""
    with conn.transaction():
        # Session activity is cached for the rest of a transaction once read: without this, a
        # transaction that read it earlier would not see sessions started since, and would
        # abandon their fresh rows.
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            """UPDATE job_runs j SET status = 'abandoned', finished_at = now(),
                      error_message = 'the process running this fetch ended before finishing it'
               WHERE status = 'running'
                 AND NOT EXISTS (
                     SELECT 1 FROM pg_stat_activity a
                      WHERE a.pid = j.owner_pid
                        -- NULL: another role's session, whose start time is hidden; its pid
                        -- is live, so the row is not provably abandoned.
                        AND (a.backend_start = j.owner_started_at OR a.backend_start IS NULL))
               RETURNING id"""
        ).fetchall()
    return len(rows)


def fetching(conn: psycopg.Connection, run_id: str) -> bool:
    """Whether a fetch of the Dagster run `run_id` is in flight."""
    row = conn.execute(
        "SELECT count(*) FROM job_runs WHERE run_id = %s AND status = 'running'", (run_id,)
    ).fetchone()
    return row != (0,)


def dead_runs(conn: psycopg.Connection, run_ids: list[str]) -> list[str]:
    """Of these runs (Dagster says they are running), those whose process is known dead: a
    fetch of theirs was abandoned (its session ended mid-fetch) and none is still running."""
    rows = conn.execute(
        """SELECT run_id FROM job_runs WHERE run_id = ANY(%s)
           GROUP BY run_id
           HAVING bool_or(status = 'abandoned') AND NOT bool_or(status = 'running')""",
        (run_ids,),
    ).fetchall()
    return [row[0] for row in rows]


@dataclass(frozen=True)
class CostSummary:
    fetches: int
    failed: int
    expected_cost: int
    actual_cost: int
    rows_written: int


def run_cost(conn: psycopg.Connection, run_ids: list[str]) -> CostSummary:
    row = conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE status = 'failed'),
                  coalesce(sum(expected_cost), 0), coalesce(sum(actual_cost), 0),
                  coalesce(sum(rows_written), 0)
           FROM job_runs WHERE run_id = ANY(%s)""",
        (run_ids,),
    ).fetchone()
    assert row is not None
    return CostSummary(*(int(v) for v in row))


def checkpoint(
    conn: psycopg.Connection, provider: str, symbol: str, timeframe: str
) -> tuple[date, datetime] | None:
    """(first day, last committed bar time) of an unfinished fetch, if there is one."""
    row = conn.execute(
        """SELECT range_start, last_ts FROM provider_checkpoints
           WHERE provider = %s AND symbol = %s AND timeframe = %s""",
        (provider, symbol, timeframe),
    ).fetchone()
    return (row[0], row[1]) if row else None


def advance_checkpoint(
    conn: psycopg.Connection,
    provider: str,
    symbol: str,
    timeframe: str,
    *,
    range_start: date,
    last_ts: datetime,
    bars: int,
) -> None:
    """Record progress of a fetch that began at `range_start`; commit it with the bars."""
    conn.execute(
        """INSERT INTO provider_checkpoints
               (provider, symbol, timeframe, range_start, last_ts, bars_written)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (provider, symbol, timeframe) DO UPDATE
           SET range_start = EXCLUDED.range_start, last_ts = EXCLUDED.last_ts,
               bars_written = provider_checkpoints.bars_written + EXCLUDED.bars_written,
               updated_at = now()""",
        (provider, symbol, timeframe, range_start, last_ts, bars),
    )


def clear_checkpoint(conn: psycopg.Connection, provider: str, symbol: str, timeframe: str) -> None:
    conn.execute(
        "DELETE FROM provider_checkpoints WHERE provider = %s AND symbol = %s AND timeframe = %s",
        (provider, symbol, timeframe),
    )
