"""The providers, and the one way a client of any of them is built.

`PROVIDERS` names each provider's client class, the variables holding its credentials, and
its role: history (past sessions, `HistoryProvider`) or today's session (`TodayProvider`).
`open_client` gives the client its token bucket and circuit breaker, both PostgreSQL rows
shared by every process, over one database connection owned by the client's context.

Adding a provider: its `Provider` value, its client module under `providers/` and one line
here; then its settings (`config.Settings`) and its Dagster resource (`defs/resources.py`), a
few fields each. Routing, storage and the ledger need no change."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, TypeVar, runtime_checkable

import polars as pl
import psycopg

from swiftbolt_pipeline.core.calendar import Session
from swiftbolt_pipeline.core.clock import Clock, SystemClock
from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.http import ProviderClient, RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline.storage.ratelimit import PostgresTokenLimiter


@runtime_checkable
class HistoryProvider(Protocol):
    """Past sessions' 15-minute bars (5-minute with `bar_minutes=5`: the opt-in m5).
    `max_symbols` tickers share one request window: 1 fetches symbol by symbol, more fetch the
    symbols that need the same window together."""

    provider: Provider
    max_symbols: int

    def history_pages(
        self,
        tickers: Sequence[str],
        first: date,
        last: date,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> Iterator[Mapping[str, pl.DataFrame]]:
        """Bars per ticker, page by page as they arrive, so each page can be stored before
        the next is requested."""
        ...


@runtime_checkable
class DailyProvider(Protocol):
    """The provider's own daily bars (its daily aggregate, extended hours and auctions
    included), `ts` = each session's open; `max_symbols` tickers share one request."""

    provider: Provider
    max_symbols: int

    def daily_bars(
        self, tickers: Sequence[str], first: date, last: date, stats: RequestStats
    ) -> dict[str, pl.DataFrame]: ...


@runtime_checkable
class GroupedDailyProvider(Protocol):
    """Every ticker's official daily bar of one session in one request (Polygon's grouped
    daily): BAR_SCHEMA plus `symbol`, `ts` = the session's open."""

    provider: Provider

    def grouped_daily(self, day: date, stats: RequestStats) -> pl.DataFrame: ...


@runtime_checkable
class TodayProvider(Protocol):
    """Today's session's complete 15-minute bars (5-minute with `bar_minutes=5`), stored as
    provisional."""

    provider: Provider

    def fetch_session_m15(
        self,
        ticker: str,
        session: Session,
        now: datetime,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> pl.DataFrame: ...


@dataclass(frozen=True)
class Registration:
    client: type[ProviderClient]
    base_url: str  # the provider's own API
    base_url_variable: str  # the environment variable pointing it elsewhere (an emulator)
    credentials: tuple[str, ...]  # the environment variables, in the client's order
    history: bool  # serves past sessions (else today's session)


PROVIDERS: dict[Provider, Registration] = {
    Provider.POLYGON: Registration(
        PolygonClient,
        "https://api.polygon.io",
        "POLYGON_BASE_URL",
        ("POLYGON_API_KEY",),
        history=True,
    ),
    Provider.ALPACA: Registration(
        AlpacaClient,
        "https://data.alpaca.markets",
        "ALPACA_BASE_URL",
        ("ALPACA_KEY_ID", "ALPACA_SECRET_KEY"),
        history=True,
    ),
    Provider.TRADIER: Registration(
        TradierClient,
        "https://api.tradier.com",
        "TRADIER_BASE_URL",
        ("TRADIER_TOKEN",),
        history=False,
    ),
}
HISTORY_PROVIDERS = tuple(p for p, r in PROVIDERS.items() if r.history)


def history_batch_size(provider: Provider) -> int:
    """How many symbols one history request of `provider` serves (its client's
    `max_symbols`): what a run over many symbols can share."""
    return int(getattr(PROVIDERS[provider].client, "max_symbols", 1))


def serves_grouped_daily(provider: Provider) -> bool:
    """Does `provider` answer every ticker's daily bar of a day in one request?"""
    return callable(getattr(PROVIDERS[provider].client, "grouped_daily", None))


C = TypeVar("C", bound=ProviderClient)


def as_history(client: ProviderClient) -> HistoryProvider:
    if not isinstance(client, HistoryProvider):
        raise TypeError(f"{client.provider} serves no history")
    return client


def as_daily(client: ProviderClient) -> DailyProvider:
    if not isinstance(client, DailyProvider):
        raise TypeError(f"{client.provider} serves no daily bars")
    return client


def as_grouped_daily(client: ProviderClient) -> GroupedDailyProvider:
    if not isinstance(client, GroupedDailyProvider):
        raise TypeError(f"{client.provider} serves no grouped daily bars")
    return client


def as_today(client: ProviderClient) -> TodayProvider:
    if not isinstance(client, TodayProvider):
        raise TypeError(f"{client.provider} serves no intraday session")
    return client


@dataclass(frozen=True)
class ClientPolicy:
    """How a client retries and waits. `max_token_wait_s` is a deadline for each token: a
    caller that must not block (a sensor tick) gets RATE_LIMIT_EXCEEDED instead."""

    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    breaker_cooldown_s: float = 60.0
    max_token_wait_s: float | None = None


def require_credentials(provider: Provider, credentials: Sequence[str | None]) -> list[str]:
    """The credentials, or PROVIDER_UNAVAILABLE naming the variables to set: an unconfigured
    provider is unavailable, so its work goes to the next provider or is skipped."""
    present = [c for c in credentials if c]
    if len(present) != len(PROVIDERS[provider].credentials):
        variables = " and ".join(PROVIDERS[provider].credentials)
        raise ProviderError(
            PROVIDER_UNAVAILABLE, f"not configured: set {variables}", provider=provider
        )
    return present


@contextmanager
def open_client(
    provider: Provider,
    client_class: type[C],
    *,
    database_url: str,
    base_url: str,
    credentials: Sequence[str | None],
    policy: ClientPolicy = ClientPolicy(),
    clock: Clock | None = None,
) -> Iterator[C]:
    """A `client_class` client of `provider` (its registered class, or another endpoint's
    client of the same provider) taking each request's token from the provider's bucket and
    reporting to its breaker; closed, with its connection, on exit."""
    secrets = require_credentials(provider, credentials)
    clock = clock or SystemClock()
    with psycopg.connect(database_url, autocommit=True) as conn:
        limiter = PostgresTokenLimiter(conn, provider, clock, max_wait_s=policy.max_token_wait_s)
        breaker = PostgresCircuitBreaker(conn, provider, cooldown_s=policy.breaker_cooldown_s)
        client = client_class.configured(
            base_url,
            secrets,
            limiter,
            clock,
            timeout_s=policy.timeout_s,
            max_attempts=policy.max_attempts,
            backoff_base_s=policy.backoff_base_s,
            breaker=breaker,
        )
        try:
            yield client
        finally:
            client.close()
