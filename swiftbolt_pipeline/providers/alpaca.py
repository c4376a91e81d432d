"""Alpaca market data v2 bars: 15-minute bars of up to 50 symbols per request, every page followed.

`limit` (max 10000) counts bars across all the symbols of a request, so a batch of many symbols
over a long range is split into pages by the server; `next_page_token` is sent back as
`page_token` with the other parameters unchanged. Symbols come back grouped (a page may end in
the middle of one), so each symbol's bars are gathered over all pages. A symbol without any bar
is absent from every page: it is reported in `AlpacaBatch.missing` (SYMBOL_NOT_FOUND for the
caller) instead of failing the batch. The key id and secret travel only in the
`APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers and are redacted from every message."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Unpack

import msgspec
import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.daily import at_session_open
from swiftbolt_pipeline.core.errors import (
    BAD_REQUEST,
    INVALID_TIMEFRAME,
    MALFORMED_RESPONSE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider
from swiftbolt_pipeline.core.ratemath import page_jitter
from swiftbolt_pipeline.providers.http import (
    ClientOptions,
    ProviderClient,
    RequestStats,
    TokenLimiter,
)

log = logging.getLogger(__name__)

MAX_SYMBOLS = 50
MAX_LIMIT = 10_000
TIMEFRAME = "15Min"
DAILY_TIMEFRAME = "1Day"


def plan_batches(tickers: Sequence[str], size: int = MAX_SYMBOLS) -> list[list[str]]:
    """Distinct upper-cased tickers in order, grouped into requests of at most `size` symbols."""
    unique = list(dict.fromkeys(t.strip().upper() for t in tickers if t.strip()))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def day_range_rfc3339(first: date, last: date) -> tuple[str, str]:
    """`start`/`end` covering exchange days `first`..`last`: 00:00 America/New_York on `first`
    to the last second before 00:00 after `last` (Alpaca's `end` is inclusive), in UTC."""
    start = datetime.combine(first, time(), EXCHANGE_TZ).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), EXCHANGE_TZ).astimezone(UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return start.strftime(fmt), (end - timedelta(seconds=1)).strftime(fmt)


@dataclass
class AlpacaBatch:
    """Bars per requested ticker (BAR_SCHEMA, sorted by `ts`, empty when none) and the tickers
    that no page mentioned (unknown to Alpaca, or no bar in the range)."""

    bars: dict[str, pl.DataFrame] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    batches: int = 0  # multi-symbol requests sent, not counting their extra pages and retries

    def error_for(self, ticker: str) -> ProviderError | None:
        """SYMBOL_NOT_FOUND for a missing ticker, else None."""
        if ticker not in self.missing:
            return None
        return ProviderError(
            SYMBOL_NOT_FOUND, f"no bars for {ticker} in the range", provider=AlpacaClient.provider
        )


class AlpacaBatchError(ProviderError):
    """A batch failed for good; `completed` holds the batches fetched before it (their tickers
    are done) and `pending` the tickers of the failed batch and those after it."""

    def __init__(self, cause: ProviderError, *, completed: AlpacaBatch, pending: list[str]) -> None:
        super().__init__(
            cause.code, cause.message, provider=cause.provider, requests=cause.requests
        )
        self.completed = completed
        self.pending = pending


class AlpacaClient(ProviderClient):
    provider = Provider.ALPACA
    max_symbols = MAX_SYMBOLS

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_key: str,
        limiter: TokenLimiter,
        clock: Clock,
        *,
        feed: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}
        secrets = [secret_key, key_id]
        super().__init__(base_url, limiter, clock, headers=headers, secrets=secrets, **options)
        self.feed = feed

    def fetch_m15_batch(
        self,
        tickers: Sequence[str],
        first: date,
        last: date,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> AlpacaBatch:
        """All 15-minute bars (extended hours included) of `tickers` from `first` to `last`
        (exchange days, inclusive): one request per 50 symbols plus the pages the server forces.
        `bar_minutes` 5 asks for `5Min` bars instead (the opt-in m5).

        Raises AlpacaBatchError (a ProviderError) when a batch fails for good, keeping the
        batches already fetched."""
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        result = AlpacaBatch()
        batches = plan_batches(tickers)
        for i, symbols in enumerate(batches):
            try:
                bars = self._fetch_batch(symbols, first, last, stats, timeframe=f"{bar_minutes}Min")
            except ProviderError as exc:
                pending = [t for batch in batches[i:] for t in batch]
                raise AlpacaBatchError(exc, completed=result, pending=pending) from exc
            result.batches += 1
            for ticker in symbols:
                rows = bars.get(ticker)
                if rows is None:
                    result.missing.append(ticker)
                result.bars[ticker] = self._to_frame(ticker, rows or [], stats, bar_minutes)
        return result

    def history_pages(
        self,
        tickers: Sequence[str],
        first: date,
        last: date,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> Iterator[Mapping[str, pl.DataFrame]]:
        """`HistoryProvider`: the batch's bars once every page is in (a page may end in the
        middle of a symbol)."""
        yield self.fetch_m15_batch(tickers, first, last, stats, bar_minutes=bar_minutes).bars

    def daily_bars(
        self, tickers: Sequence[str], first: date, last: date, stats: RequestStats
    ) -> dict[str, pl.DataFrame]:
        """`DailyProvider`: Alpaca's `1Day` bars of up to 50 symbols per request (plus the
        pages `limit` forces) for exchange days `first`..`last`, `ts` moved from Alpaca's
        00:00 ET label to the session's open. A ticker without any bar maps to an empty frame.
        """
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        out: dict[str, pl.DataFrame] = {}
        for symbols in plan_batches(tickers):
            bars = self._fetch_batch(symbols, first, last, stats, timeframe=DAILY_TIMEFRAME)
            for ticker in symbols:
                frame = self._to_frame(ticker, bars.get(ticker) or [], stats)
                out[ticker] = at_session_open(frame)
        return out

    def _fetch_batch(
        self,
        symbols: list[str],
        first: date,
        last: date,
        stats: RequestStats,
        *,
        timeframe: str = TIMEFRAME,
    ) -> dict[str, list[WireBar]]:
        start, end = day_range_rfc3339(first, last)
        params = {
            "symbols": ",".join(symbols),
            "timeframe": timeframe,
            "start": start,
            "end": end,
            "limit": str(MAX_LIMIT),
            "adjustment": "all",
            "sort": "asc",
        }
        if self.feed:
            params["feed"] = self.feed
        url = f"{self.base_url}/v2/stocks/bars"
        wanted = set(symbols)
        out: dict[str, list[WireBar]] = {}
        seen_tokens: set[str] = set()
        token: str | None = None
        page = 0
        while True:
            page += 1
            log.info(
                "alpaca %d symbols (%s..) %s..%s page %d",
                len(symbols),
                symbols[0],
                first,
                last,
                page,
            )
            query = params if token is None else {**params, "page_token": token}
            payload = self._get(url, query, stats)
            for symbol, bars in (payload.bars or {}).items():
                if symbol not in wanted:
                    raise self._malformed(f"bars for a symbol not requested: {symbol!r:.20}", stats)
                out.setdefault(symbol, []).extend(bars)
            token = payload.next_page_token or None
            if token is None:
                return out
            if token in seen_tokens:
                raise self._malformed("next_page_token repeats: paging would never end", stats)
            seen_tokens.add(token)
            self.clock.sleep(page_jitter(self.rng))

    def _get(self, url: str, params: dict[str, str], stats: RequestStats) -> WirePage:
        try:
            return self._client.get_json(url, stats, params=params, decoder=_PAGE)
        except ProviderError as exc:
            # Alpaca answers 422 "invalid timeframe": give it the contract's own code.
            if exc.code == BAD_REQUEST and "invalid timeframe" in exc.message.lower():
                raise ProviderError(
                    INVALID_TIMEFRAME, exc.message, provider=self.provider, requests=exc.requests
                ) from exc
            raise

    def _to_frame(
        self, ticker: str, rows: list[WireBar], stats: RequestStats, bar_minutes: int | None = 15
    ) -> pl.DataFrame:
        """BAR_SCHEMA sorted by `ts`. `bar_minutes`: the grid every bar must sit on (None:
        daily bars, no grid). The decoder has already checked every field's type and range
        (finite numbers, no booleans); fractional volumes (crypto) are rounded, a fractional
        trade count truncated."""
        if not rows:
            return pl.DataFrame(schema=BAR_SCHEMA)
        frame = pl.DataFrame(
            {
                "ts": _parse_times([b.t for b in rows]),
                "open": [b.o for b in rows],
                "high": [b.h for b in rows],
                "low": [b.l for b in rows],
                "close": [b.c for b in rows],
                "volume": pl.Series([b.v for b in rows], dtype=pl.Float64).round(0),
                "vwap": [b.vw for b in rows],
                "trade_count": pl.Series([b.n for b in rows], dtype=pl.Float64),
            },
        ).cast(BAR_SCHEMA)  # type: ignore[arg-type]
        bad_time = frame["ts"].is_null()
        if bad_time.any():
            raise self._malformed(
                f"{ticker} bar with a bad time: {rows[bad_time.arg_max() or 0].t!r:.40}", stats
            )
        # A bar off the grid means another timeframe was served.
        if (
            bar_minutes is not None
            and (frame["ts"].dt.epoch("us") % (bar_minutes * 60_000_000) != 0).any()
        ):
            raise self._malformed(
                f"{ticker} bar not aligned to the {bar_minutes}-minute grid", stats
            )
        frame = frame.sort("ts")
        if frame["ts"].is_duplicated().any():
            raise self._malformed(f"duplicate bar start times for {ticker}", stats)
        return frame

    def _malformed(self, message: str, stats: RequestStats) -> ProviderError:
        return ProviderError(
            MALFORMED_RESPONSE, message, provider=self.provider, requests=stats.requests
        )


class WireBar(msgspec.Struct, frozen=True):
    """One bar as Alpaca sends it; `n` and `vw` may be absent."""

    t: str
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: int | float
    n: int | float | None = None
    vw: float | None = None


class WirePage(msgspec.Struct, frozen=True):
    """One page of bars, keyed by symbol (`null` when no symbol has a bar)."""

    bars: dict[str, list[WireBar]] | None
    next_page_token: str | None = None


_PAGE = msgspec.json.Decoder(WirePage)
_RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"


def _parse_times(raw: list[str]) -> pl.Series:
    """RFC 3339 instants in UTC; null where unusable. Alpaca writes `...Z`, parsed in one
    vectorized pass; any other spelling (an offset, fractions) takes the general parser."""
    parsed = pl.Series(raw, dtype=pl.String).str.to_datetime(
        _RFC3339_UTC, time_unit="us", time_zone="UTC", strict=False
    )
    if parsed.null_count():
        parsed = pl.Series([_parse_time(t) for t in raw], dtype=pl.Datetime("us", "UTC"))
    return parsed


def _parse_time(raw: Any) -> datetime | None:
    """An RFC 3339 instant with an offset (`Z` included), in UTC; None when unusable."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)
