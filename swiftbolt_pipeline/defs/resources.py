"""Resources: the warehouse (PostgreSQL) and the provider clients, built by
`providers.registry.open_client` (each request's token from the shared PostgreSQL bucket,
each outcome to the shared circuit breaker)."""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
import psycopg

from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.providers.crypto import CryptoHistory, as_crypto, crypto_client_class
from swiftbolt_pipeline.providers.polygon_reference import PolygonReferenceClient
from swiftbolt_pipeline.providers.registry import (
    PROVIDERS,
    C,
    ClientPolicy,
    DailyProvider,
    GroupedDailyProvider,
    HistoryProvider,
    TodayProvider,
    as_daily,
    as_grouped_daily,
    as_history,
    as_today,
    open_client,
)
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import migrate


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


class AlertWebhookResource(dg.ConfigurableResource):
    """The operators' webhook (SWIFTBOLT_ALERT_WEBHOOK); unset, alerts wait in the outbox."""

    url: str | None = None


class _ProviderResource(dg.ConfigurableResource):
    """What every provider resource shares: the warehouse holding the limiter and breaker, and
    the retry policy. Unconfigured (no credentials), opening a client refuses with
    PROVIDER_UNAVAILABLE: the provider's work goes to the next provider or is skipped."""

    provider: ClassVar[Provider]
    warehouse: WarehouseResource
    base_url: str
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0

    def _credentials(self) -> list[str | None]:
        raise NotImplementedError

    @contextmanager
    def _open(
        self,
        client_class: type[C],
        *,
        max_attempts: int | None = None,
        max_token_wait_s: float | None = None,
    ) -> Iterator[C]:
        policy = ClientPolicy(
            timeout_s=self.timeout_s,
            max_attempts=min(max_attempts or self.max_attempts, self.max_attempts),
            backoff_base_s=self.backoff_base_s,
            breaker_cooldown_s=self.breaker_cooldown_s,
            max_token_wait_s=max_token_wait_s,
        )
        with open_client(
            self.provider,
            client_class,
            database_url=self.warehouse.url,
            base_url=self.base_url,
            credentials=self._credentials(),
            policy=policy,
        ) as client:
            yield client

    @contextmanager
    def history_client(self) -> Iterator[HistoryProvider]:
        with self._open(PROVIDERS[self.provider].client) as client:
            yield as_history(client)

    @contextmanager
    def crypto_client(self) -> Iterator[CryptoHistory]:
        """Crypto pairs' bars on this provider's bucket and breaker (PROVIDER_UNAVAILABLE for
        a provider without crypto)."""
        with self._open(crypto_client_class(self.provider)) as client:
            yield as_crypto(client)

    @contextmanager
    def daily_client(self) -> Iterator[DailyProvider]:
        with self._open(PROVIDERS[self.provider].client) as client:
            yield as_daily(client)

    @contextmanager
    def grouped_daily_client(self) -> Iterator[GroupedDailyProvider]:
        with self._open(PROVIDERS[self.provider].client) as client:
            yield as_grouped_daily(client)

    @contextmanager
    def today_client(self) -> Iterator[TodayProvider]:
        with self._open(PROVIDERS[self.provider].client) as client:
            yield as_today(client)


class PolygonResource(_ProviderResource):
    """Polygon (history, splits): all runs and processes share one 5 requests/minute."""

    provider: ClassVar[Provider] = Provider.POLYGON
    api_key: str | None = None
    base_url: str = PROVIDERS[Provider.POLYGON].base_url

    def _credentials(self) -> list[str | None]:
        return [self.api_key]

    @contextmanager
    def reference_client(
        self, *, max_attempts: int, max_token_wait_s: float
    ) -> Iterator[PolygonReferenceClient]:
        """The splits endpoint, on the same bucket and breaker as the aggregates; a caller that
        must not block bounds the attempts and each token's wait."""
        with self._open(
            PolygonReferenceClient, max_attempts=max_attempts, max_token_wait_s=max_token_wait_s
        ) as client:
            yield client


class TradierResource(_ProviderResource):
    """Tradier time & sales for today's session. Unconfigured, today's session waits for the
    history provider."""

    provider: ClassVar[Provider] = Provider.TRADIER
    token: str | None = None
    base_url: str = PROVIDERS[Provider.TRADIER].base_url

    def _credentials(self) -> list[str | None]:
        return [self.token]


class AlpacaResource(_ProviderResource):
    """Alpaca multi-symbol bars: a history fallback (or primary)."""

    provider: ClassVar[Provider] = Provider.ALPACA
    key_id: str | None = None
    secret_key: str | None = None
    base_url: str = PROVIDERS[Provider.ALPACA].base_url

    def _credentials(self) -> list[str | None]:
        return [self.key_id, self.secret_key]
