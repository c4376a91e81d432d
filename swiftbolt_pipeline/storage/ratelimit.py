"""The shared token bucket: every process asks PostgreSQL (`take_token`) before each request."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import psycopg

from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.ratemath import token_wait

log = logging.getLogger(__name__)


class PostgresTokenLimiter:
    """Blocks until `take_token(provider)` grants a token, pausing 0.7-1.3 s between asks."""

    def __init__(
        self, url: str, provider: str, clock: Clock, rng: random.Random | None = None
    ) -> None:
        self.url = url
        self.provider = provider
        self.clock = clock
        self.rng = rng or random.Random()
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def acquire(self) -> float:
        started = time.monotonic()
        while True:
            row = self._connection().execute("SELECT take_token(%s)", (self.provider,)).fetchone()
            if row and row[0]:
                return time.monotonic() - started
            self.clock.sleep(token_wait(self.rng))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass(frozen=True)
class TokenStatus:
    provider: str
    available_tokens: float
    capacity: int
    refill_rate: float
    seconds_until_full: float

    def to_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "available_tokens": self.available_tokens,
            "capacity": self.capacity,
            "refill_rate": self.refill_rate,
            "seconds_until_full": self.seconds_until_full,
        }


def token_status(conn: psycopg.Connection, provider: str | None = None) -> list[TokenStatus]:
    providers = (
        [provider]
        if provider
        else [r[0] for r in conn.execute("SELECT provider FROM rate_buckets ORDER BY provider")]
    )
    result = []
    for name in providers:
        row = conn.execute("SELECT * FROM get_token_status(%s)", (name,)).fetchone()
        if row is None:
            raise LookupError(f"unknown provider {name!r}")
        name, available, capacity, refill_rate, until_full = row
        result.append(
            TokenStatus(
                name, float(available), int(capacity), float(refill_rate), float(until_full)
            )
        )
    return result


def set_limits(
    conn: psycopg.Connection,
    provider: str,
    *,
    capacity: int,
    refill_per_min: float,
    window_s: float | None = None,
) -> None:
    """Change a provider's limits; the bucket starts full at the new capacity."""
    with conn.transaction():
        updated = conn.execute(
            """UPDATE rate_buckets SET capacity = %s, refill_per_min = %s, tokens = %s,
                      window_s = coalesce(%s, window_s), updated_at = clock_timestamp()
               WHERE provider = %s""",
            (capacity, refill_per_min, capacity, window_s, provider),
        ).rowcount
        if not updated:
            raise LookupError(f"unknown provider {provider!r}")
        conn.execute("DELETE FROM rate_grants WHERE provider = %s", (provider,))
