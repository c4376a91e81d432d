"""Circuit breaker per provider, its state in PostgreSQL so every worker shares it.

closed --(N consecutive failed requests)--> open --(cooldown)--> half_open: one probe request
goes through; its success closes the breaker, its failure re-opens it for another cooldown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

from swiftbolt_pipeline.core.alerts import AlertKind
from swiftbolt_pipeline.storage import alerts

log = logging.getLogger(__name__)

FAILURE_THRESHOLD = 5


@dataclass(frozen=True)
class BreakerState:
    provider: str
    state: str
    consecutive_failures: int
    opened_at: datetime | None


class PostgresCircuitBreaker:
    """One provider's breaker. `conn` is an autocommit connection owned by the caller, who may
    share it with the provider's token limiter (each call is its own statement or
    transaction)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        provider: str,
        *,
        cooldown_s: float = 60.0,
        threshold: int = FAILURE_THRESHOLD,
    ) -> None:
        self.conn = conn
        self.provider = provider
        self.cooldown_s = cooldown_s
        self.threshold = threshold
        conn.execute(
            "INSERT INTO provider_breakers (provider) VALUES (%s) ON CONFLICT DO NOTHING",
            (provider,),
        )

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one caller (the probe) may."""
        conn = self.conn
        with conn.transaction():
            row = conn.execute(
                """SELECT state,
                          extract(epoch FROM clock_timestamp() - opened_at),
                          extract(epoch FROM clock_timestamp() - probe_started_at)
                   FROM provider_breakers WHERE provider = %s FOR UPDATE""",
                (self.provider,),
            ).fetchone()
            assert row is not None
            state, open_for, probing_for = row
            if state == "closed":
                return True
            cooled = open_for is not None and float(open_for) >= self.cooldown_s
            stale_probe = probing_for is None or float(probing_for) >= self.cooldown_s
            if (state == "open" and cooled) or (state == "half_open" and stale_probe):
                conn.execute(
                    """UPDATE provider_breakers SET state = 'half_open',
                              probe_started_at = clock_timestamp(), updated_at = now()
                       WHERE provider = %s""",
                    (self.provider,),
                )
                log.info("%s circuit half-open: sending one probe request", self.provider)
                return True
            return False

    def success(self) -> None:
        conn = self.conn
        conn.execute(
            """UPDATE provider_breakers SET state = 'closed', consecutive_failures = 0,
                      opened_at = NULL, probe_started_at = NULL, updated_at = now()
               WHERE provider = %s AND (state <> 'closed' OR consecutive_failures > 0)""",
            (self.provider,),
        )

    def failure(self) -> None:
        """Count a failed request. The call that opens the breaker records the alert in the
        same transaction, under the row lock: one alert per opening, however many workers
        fail at once."""
        conn = self.conn
        with conn.transaction():
            before = conn.execute(
                "SELECT state FROM provider_breakers WHERE provider = %s FOR UPDATE",
                (self.provider,),
            ).fetchone()
            row = self._count_failure(conn)
            if before and row and before[0] != "open" and row[0] == "open":
                reason = (
                    "the probe request after the cooldown failed"
                    if before[0] == "half_open"
                    else f"{row[1]} consecutive failed requests"
                )
                alerts.record(
                    conn,
                    AlertKind.BREAKER_OPENED,
                    self.provider,
                    f"{reason}; requests skip {self.provider} for {self.cooldown_s:g} s,"
                    " then one probe",
                )
        if row and row[0] == "open":
            log.warning("%s circuit open after repeated failures", self.provider)

    def _count_failure(self, conn: psycopg.Connection) -> tuple[str, int] | None:
        return conn.execute(
            """UPDATE provider_breakers SET
                   consecutive_failures = consecutive_failures + 1,
                   state = CASE WHEN state = 'half_open'
                                  OR consecutive_failures + 1 >= %s THEN 'open' ELSE state END,
                   opened_at = CASE WHEN state = 'half_open'
                                      OR (state = 'closed' AND consecutive_failures + 1 >= %s)
                                    THEN clock_timestamp() ELSE opened_at END,
                   probe_started_at = NULL,
                   updated_at = now()
               WHERE provider = %s RETURNING state, consecutive_failures""",
            (self.threshold, self.threshold, self.provider),
        ).fetchone()


def breaker_state(conn: psycopg.Connection, provider: str) -> BreakerState | None:
    row = conn.execute(
        """SELECT provider, state, consecutive_failures, opened_at FROM provider_breakers
           WHERE provider = %s""",
        (provider,),
    ).fetchone()
    return BreakerState(*row) if row else None


def all_states(conn: psycopg.Connection) -> list[BreakerState]:
    rows = conn.execute(
        """SELECT provider, state, consecutive_failures, opened_at FROM provider_breakers
           ORDER BY provider"""
    ).fetchall()
    return [BreakerState(*row) for row in rows]
