"""The shared token bucket: every process asks PostgreSQL (`take_token_or_wait`) before each
request, and sleeps until the bucket says its token is due."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import psycopg

from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.errors import RATE_LIMIT_EXCEEDED, ProviderError
from swiftbolt_pipeline.core.ratemath import sustained_per_min, wait_for_token

log = logging.getLogger(__name__)


class PostgresTokenLimiter:
    """Blocks until `take_token_or_wait(provider)` grants a token. With `max_wait_s` (a
    deadline), gives up with `RATE_LIMIT_EXCEEDED` as soon as the next token is due later than
    that (a sensor tick defers its work rather than block behind a backfill using the whole
    budget).

    `conn` is an autocommit connection owned by the caller, who may share it with the
    provider's circuit breaker: each call is one statement, and the bucket is a row every
    process updates through the same function, so sharing needs no coordination here."""

    def __init__(
        self,
        conn: psycopg.Connection,
        provider: str,
        clock: Clock,
        rng: random.Random | None = None,
        *,
        max_wait_s: float | None = None,
    ) -> None:
        self.conn = conn
        self.provider = provider
        self.clock = clock
        self.rng = rng or random.Random()
        self.max_wait_s = max_wait_s

    def _ask(self) -> float:
        row = self.conn.execute("SELECT take_token_or_wait(%s)", (self.provider,)).fetchone()
        assert row is not None  # a scalar function always returns one row
        return float(row[0])

    def acquire(self) -> float:
        """Seconds spent waiting for the token."""
        waited = wait_for_token(self._ask, self.clock, self.rng, max_wait_s=self.max_wait_s)
        if waited is None:
            raise ProviderError(
                RATE_LIMIT_EXCEEDED,
                f"no {self.provider} token within {self.max_wait_s:g}s",
                provider=self.provider,
            )
        return waited


@dataclass(frozen=True)
class TokenStatus:
    """The `get_token_status` row, plus the window it is enforced over."""

    provider: str
    available_tokens: float
    capacity: int
    refill_rate: float
    seconds_until_full: float
    window_s: float

    @property
    def sustained_per_min(self) -> float:
        """Requests per minute granted under constant demand."""
        return sustained_per_min(self.refill_rate, self.window_s)

    def to_json(self) -> dict[str, object]:
        """The contract's fields (the `get_token_status` columns)."""
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
        row = conn.execute(
            """SELECT s.*, b.window_s FROM get_token_status(%s) s
                 JOIN rate_buckets b USING (provider)""",
            (name,),
        ).fetchone()
        if row is None:
            raise LookupError(f"unknown provider {name!r}")
        name, available, capacity, refill_rate, until_full, window_s = row
        result.append(
            TokenStatus(
                name,
                float(available),
                int(capacity),
                float(refill_rate),
                float(until_full),
                float(window_s),
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
    """Change a provider's limits: `refill_per_min` is the sustained rate (also capping the
    grants in any `window_s`), `capacity` the largest burst. The bucket starts full."""
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
