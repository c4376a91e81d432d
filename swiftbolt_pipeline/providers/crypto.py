"""Crypto pairs' 15-minute bars over whole UTC days, from the same providers, limiter and
breaker as stocks (a crypto request takes a token from the provider's one bucket).

* Polygon: the stock aggregates endpoint, `/v2/aggs/ticker/X:BTCUSD/range/15/minute/{from}/{to}`,
  with millisecond bounds at UTC midnight (a date would be read as a New York day), following
  `next_url` like every aggregates fetch. `v` is fractional (coins), stored rounded.
* Alpaca: `GET /v1beta3/crypto/us/bars?symbols=BTC/USD&timeframe=15Min&start=..&end=..`
  (RFC 3339, `end` inclusive), `next_page_token` sent back as `page_token`; the pair is written
  with a slash (X:BTCUSD -> BTC/USD). No `adjustment` or `feed` parameter exists for crypto.

Tradier serves no crypto: today's crypto day also comes from the history provider."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

import polars as pl

from swiftbolt_pipeline.core.crypto_calendar import SLOTS_PER_DAY, day_start
from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider, crypto_pair
from swiftbolt_pipeline.core.ratemath import page_jitter
from swiftbolt_pipeline.providers.alpaca import MAX_LIMIT as ALPACA_MAX_LIMIT
from swiftbolt_pipeline.providers.alpaca import TIMEFRAME, AlpacaClient
from swiftbolt_pipeline.providers.http import ProviderClient, RequestStats
from swiftbolt_pipeline.providers.polygon import MAX_LIMIT as POLYGON_MAX_LIMIT
from swiftbolt_pipeline.providers.polygon import PolygonClient, aggregates_frame

log = logging.getLogger(__name__)


@runtime_checkable
class CryptoHistory(Protocol):
    """A crypto pair's 15-minute bars of UTC days `first`..`last`, page by page."""

    provider: Provider

    def crypto_pages(
        self, ticker: str, first: date, last: date, stats: RequestStats
    ) -> Iterator[pl.DataFrame]: ...


def _epoch_ms(instant: datetime) -> int:
    return round(instant.timestamp() * 1000)


class PolygonCryptoClient(PolygonClient):
    """Polygon aggregates of an `X:` pair over UTC days."""

    def crypto_pages(
        self, ticker: str, first: date, last: date, stats: RequestStats
    ) -> Iterator[pl.DataFrame]:
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        start = _epoch_ms(day_start(first))
        end = _epoch_ms(day_start(last + timedelta(days=1))) - 1  # inclusive: bars up to 23:45
        prefix = f"/v2/aggs/ticker/{ticker}/range/15/minute/"
        url = f"{self.base_url}{prefix}{start}/{end}"
        params = {"adjusted": "true", "sort": "asc", "limit": str(POLYGON_MAX_LIMIT)}
        max_pages = ((last - first).days + 1) * SLOTS_PER_DAY + 1
        label = f"{ticker} {first}..{last} UTC"
        for payload in self._pages(
            url, params, stats, label=label, max_pages=max_pages, path_prefix=prefix
        ):
            yield aggregates_frame(self._results(payload, ticker, stats))


def alpaca_symbol(ticker: str) -> str:
    """Alpaca's name of a pair: X:BTCUSD -> BTC/USD."""
    base, quote = crypto_pair(ticker)
    return f"{base}/{quote}"


class AlpacaCryptoClient(AlpacaClient):
    """Alpaca's crypto bars (US venue) of one pair over UTC days."""

    def crypto_pages(
        self, ticker: str, first: date, last: date, stats: RequestStats
    ) -> Iterator[pl.DataFrame]:
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        symbol = alpaca_symbol(ticker)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        end = day_start(last + timedelta(days=1)) - timedelta(seconds=1)
        params = {
            "symbols": symbol,
            "timeframe": TIMEFRAME,
            "start": day_start(first).strftime(fmt),
            "end": end.strftime(fmt),
            "limit": str(ALPACA_MAX_LIMIT),
            "sort": "asc",
        }
        url = f"{self.base_url}/v1beta3/crypto/us/bars"
        seen: set[str] = set()
        token: str | None = None
        while True:
            log.info("alpaca crypto %s %s..%s page %d", symbol, first, last, len(seen) + 1)
            query = params if token is None else {**params, "page_token": token}
            payload = self._get(url, query, stats)
            page = payload.bars or {}
            strays = set(page) - {symbol}
            if strays:
                raise self._malformed(f"bars for a pair not requested: {min(strays)!r:.20}", stats)
            yield self._to_frame(ticker, page.get(symbol) or [], stats)
            token = payload.next_page_token or None
            if token is None:
                return
            if token in seen:
                raise self._malformed("next_page_token repeats: paging would never end", stats)
            seen.add(token)
            self.clock.sleep(page_jitter(self.rng))


CRYPTO_CLIENTS: dict[Provider, type[ProviderClient]] = {
    Provider.POLYGON: PolygonCryptoClient,
    Provider.ALPACA: AlpacaCryptoClient,
}


def crypto_client_class(provider: Provider) -> type[ProviderClient]:
    """The client class serving `provider`'s crypto bars; PROVIDER_UNAVAILABLE for a provider
    without crypto (Tradier), so its share goes to the next provider."""
    try:
        return CRYPTO_CLIENTS[provider]
    except KeyError:
        raise ProviderError(
            PROVIDER_UNAVAILABLE, f"{provider} serves no crypto bars", provider=provider
        ) from None


def as_crypto(client: ProviderClient) -> CryptoHistory:
    if not isinstance(client, CryptoHistory):
        raise TypeError(f"{client.provider} serves no crypto bars")
    return client
