"""Resources: the warehouse (PostgreSQL) and the Polygon client that owns the rate limiter."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline.storage.ratelimit import PostgresTokenLimiter


class WarehouseResource(dg.ConfigurableResource):
    """The project's PostgreSQL: bars, watchlist, rate buckets, ledger."""

    database_url: str

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with database.connect(self.database_url) as conn:
            yield conn


class PolygonResource(dg.ConfigurableResource):
    """Polygon aggregates client; every request (page, retry) takes a token from the shared
    PostgreSQL bucket, so all runs and processes share one 5 requests/minute budget."""

    api_key: str
    base_url: str = "https://api.polygon.io"
    warehouse: WarehouseResource
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0

    @contextmanager
    def client(self) -> Iterator[PolygonClient]:
        clock = SystemClock()
        limiter = PostgresTokenLimiter(self.warehouse.database_url, "polygon", clock)
        breaker = PostgresCircuitBreaker(
            self.warehouse.database_url, "polygon", cooldown_s=self.breaker_cooldown_s
        )
        client = PolygonClient(
            self.base_url,
            self.api_key,
            limiter,
            clock,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            breaker=breaker,
        )
        try:
            yield client
        finally:
            client.close()
            limiter.close()
            breaker.close()


class TradierResource(dg.ConfigurableResource):
    """Tradier time & sales for today's session, through the same shared limiter."""

    token: str
    base_url: str = "https://api.tradier.com"
    warehouse: WarehouseResource
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0

    @contextmanager
    def client(self) -> Iterator[TradierClient]:
        clock = SystemClock()
        limiter = PostgresTokenLimiter(self.warehouse.database_url, "tradier", clock)
        breaker = PostgresCircuitBreaker(
            self.warehouse.database_url, "tradier", cooldown_s=self.breaker_cooldown_s
        )
        client = TradierClient(
            self.base_url,
            self.token,
            limiter,
            clock,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            breaker=breaker,
        )
        try:
            yield client
        finally:
            client.close()
            limiter.close()
            breaker.close()


class AlpacaResource(dg.ConfigurableResource):
    """Alpaca multi-symbol bars: a history fallback (or primary) through the same limiter.
    Unconfigured (no keys) it refuses with PROVIDER_UNAVAILABLE instead of failing every run."""

    key_id: str | None = None
    secret_key: str | None = None
    base_url: str = "https://data.alpaca.markets"
    warehouse: WarehouseResource
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0

    @contextmanager
    def client(self) -> Iterator[AlpacaClient]:
        if not self.key_id or not self.secret_key:
            raise ProviderError(
                PROVIDER_UNAVAILABLE,
                "not configured: set ALPACA_KEY_ID and ALPACA_SECRET_KEY",
                provider="alpaca",
            )
        clock = SystemClock()
        limiter = PostgresTokenLimiter(self.warehouse.database_url, "alpaca", clock)
        breaker = PostgresCircuitBreaker(
            self.warehouse.database_url, "alpaca", cooldown_s=self.breaker_cooldown_s
        )
        client = AlpacaClient(
            self.base_url,
            self.key_id,
            self.secret_key,
            limiter,
            clock,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            breaker=breaker,
        )
        try:
            yield client
        finally:
            client.close()
            limiter.close()
            breaker.close()
