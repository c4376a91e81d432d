"""Resources: the warehouse (PostgreSQL) and the provider clients, each of which takes every
request's token from the shared PostgreSQL bucket and reports to the shared circuit breaker."""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline.storage.migrate import migrate
from swiftbolt_pipeline.storage.ratelimit import PostgresTokenLimiter


class WarehouseResource(dg.ConfigurableResource):
    """The project's PostgreSQL: bars, watchlist, rate buckets, ledger. Without `database_url`
    (DATABASE_URL unset), the embedded server under `home`, started on first use, so its
    address (with any password) never appears in the resource's configuration."""

    database_url: str | None = None
    home: str = ".swiftbolt"

    @property
    def url(self) -> str:
        return self.database_url or _embedded_warehouse(Path(self.home).resolve())

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with database.connect(self.url) as conn:
            yield conn


@functools.cache
def _embedded_warehouse(home: Path) -> str:
    """The embedded database, migrated once per process: started by Dagster's own tools
    (`dagster dev`), no `swiftbolt` command has brought its schema up to date."""
    url = database.start_embedded(home)
    with database.connect(url) as conn:
        migrate(conn)
    return url


class _ProviderResource(dg.ConfigurableResource):
    """What every provider client shares: the warehouse holding the limiter and breaker, and
    the retry policy."""

    warehouse: WarehouseResource
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0

    @contextmanager
    def _policy(self, provider: str) -> Iterator[dict[str, Any]]:
        """Keyword arguments for a provider client, closed again afterwards."""
        clock = SystemClock()
        url = self.warehouse.url
        limiter = PostgresTokenLimiter(url, provider, clock)
        breaker = PostgresCircuitBreaker(url, provider, cooldown_s=self.breaker_cooldown_s)
        try:
            yield {
                "limiter": limiter,
                "clock": clock,
                "timeout_s": self.timeout_s,
                "max_attempts": self.max_attempts,
                "backoff_base_s": self.backoff_base_s,
                "breaker": breaker,
            }
        finally:
            limiter.close()
            breaker.close()


def _not_configured(provider: str, variables: str) -> ProviderError:
    return ProviderError(
        PROVIDER_UNAVAILABLE, f"not configured: set {variables}", provider=provider
    )


class PolygonResource(_ProviderResource):
    """Polygon aggregates (history): all runs and processes share one 5 requests/minute.
    Unconfigured (no key) it refuses with PROVIDER_UNAVAILABLE, like every provider."""

    api_key: str | None = None
    base_url: str = "https://api.polygon.io"

    @contextmanager
    def client(self) -> Iterator[PolygonClient]:
        if not self.api_key:
            raise _not_configured("polygon", "POLYGON_API_KEY")
        with self._policy("polygon") as policy:
            client = PolygonClient(self.base_url, self.api_key, **policy)
            try:
                yield client
            finally:
                client.close()


class TradierResource(_ProviderResource):
    """Tradier time & sales for today's session. Unconfigured (no token), today's session
    waits for the history provider."""

    token: str | None = None
    base_url: str = "https://api.tradier.com"

    @contextmanager
    def client(self) -> Iterator[TradierClient]:
        if not self.token:
            raise _not_configured("tradier", "TRADIER_TOKEN")
        with self._policy("tradier") as policy:
            client = TradierClient(self.base_url, self.token, **policy)
            try:
                yield client
            finally:
                client.close()


class AlpacaResource(_ProviderResource):
    """Alpaca multi-symbol bars: a history fallback (or primary).
    Unconfigured (no keys) it refuses with PROVIDER_UNAVAILABLE instead of failing every run."""

    key_id: str | None = None
    secret_key: str | None = None
    base_url: str = "https://data.alpaca.markets"

    @contextmanager
    def client(self) -> Iterator[AlpacaClient]:
        if not self.key_id or not self.secret_key:
            raise _not_configured("alpaca", "ALPACA_KEY_ID and ALPACA_SECRET_KEY")
        with self._policy("alpaca") as policy:
            client = AlpacaClient(self.base_url, self.key_id, self.secret_key, **policy)
            try:
                yield client
            finally:
                client.close()
