"""The `alerts` outbox: recorded in the transaction of the event, delivered by one sender."""

from __future__ import annotations

import psycopg

from swiftbolt_pipeline.core.alerts import Alert, AlertKind

# Undelivered alerts older than this are not posted any more: a webhook configured (or back)
# after a long while receives what is current, not a backlog of stale news.
MAX_AGE_S = 24 * 3600
RETRY_BASE_S = 15
RETRY_MAX_S = 900


def record(
    conn: psycopg.Connection,
    kind: AlertKind,
    subject: str,
    reason: str,
    *,
    dedupe_key: str | None = None,
) -> bool:
    """Record an alert in the caller's transaction; False when `dedupe_key` was recorded
    before."""
    row = conn.execute(
        """INSERT INTO alerts (kind, subject, reason, dedupe_key) VALUES (%s, %s, %s, %s)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id""",
        (kind.value, subject, reason, dedupe_key),
    ).fetchone()
    return row is not None


def claim_next(conn: psycopg.Connection) -> Alert | None:
    """The oldest alert due for delivery, locked until the caller's transaction ends; other
    senders skip it, so each alert goes out from one sender at a time."""
    row = conn.execute(
        """SELECT id, kind, subject, reason, at FROM alerts
           WHERE delivered_at IS NULL AND next_attempt_at <= clock_timestamp()
             AND at > clock_timestamp() - make_interval(secs => %s)
           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED""",
        (MAX_AGE_S,),
    ).fetchone()
    if row is None:
        return None
    alert_id, kind, subject, reason, at = row
    return Alert(alert_id, AlertKind(kind), subject, reason, at)


def mark_delivered(conn: psycopg.Connection, alert_id: int) -> None:
    conn.execute(
        """UPDATE alerts SET delivered_at = clock_timestamp(), attempts = attempts + 1,
                  last_error = NULL WHERE id = %s""",
        (alert_id,),
    )


def postpone(conn: psycopg.Connection, alert_id: int, error: str) -> None:
    """A failed post: retry later, backing off exponentially up to RETRY_MAX_S."""
    conn.execute(
        """UPDATE alerts SET attempts = attempts + 1, last_error = %s,
                  next_attempt_at = clock_timestamp()
                      + make_interval(secs => least(%s * power(2, attempts), %s))
           WHERE id = %s""",
        (error, RETRY_BASE_S, RETRY_MAX_S, alert_id),
    )
