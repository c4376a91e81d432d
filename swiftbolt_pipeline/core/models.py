"""Shared vocabulary: timeframes, tickers and the columnar shape of a batch of bars."""

from __future__ import annotations

import re
from enum import StrEnum

import polars as pl


class Timeframe(StrEnum):
    M5 = "m5"
    M15 = "m15"
    H1 = "h1"
    H4 = "h4"
    D1 = "d1"
    W1 = "w1"
    MO1 = "mo1"


# Raw timeframes, fetched from the providers: m15 for every symbol, m5 for the symbols opted
# in (`watch add --m5`, SWIFTBOLT_M5). Minutes per bar, the grid their bars sit on.
RAW_BAR_MINUTES: dict[Timeframe, int] = {Timeframe.M5: 5, Timeframe.M15: 15}

# Derived from stored m15 bars; d1 is the provider's own daily bar, w1/mo1 roll it up.
DERIVED_TIMEFRAMES = (Timeframe.H1, Timeframe.H4)


class Provider(StrEnum):
    POLYGON = "polygon"
    TRADIER = "tradier"
    ALPACA = "alpaca"


# Bars travel between modules as polars frames with exactly these columns and types.
BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "vwap": pl.Float64(),
    "trade_count": pl.Int64(),
}

_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,2})?$")

# Crypto pairs are Polygon's `X:` tickers: base then quote currency, e.g. X:BTCUSD, X:ETHBTC.
# The prefix is what makes a symbol crypto, everywhere (calendar, partitions, providers).
CRYPTO_PREFIX = "X:"
# Quote currencies a pair may end in, longest first so X:BTCUSDT splits as BTC/USDT.
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH")
CRYPTO_BASE_MAX = 10
# The whole rule (also the `symbols.ticker` CHECK and the API's pattern): a base of 1 to 10
# letters or digits, then a quote currency.
CRYPTO_PATTERN = rf"^X:[A-Z0-9]{{1,{CRYPTO_BASE_MAX}}}({'|'.join(CRYPTO_QUOTES)})$"
_CRYPTO_TICKER = re.compile(CRYPTO_PATTERN)
_ALNUM = re.compile(r"^[A-Z0-9]+$")


def is_crypto(ticker: str) -> bool:
    """Is `ticker` a crypto pair (trades 24/7 on UTC days) rather than a US equity?"""
    return ticker.strip().upper().startswith(CRYPTO_PREFIX)


def crypto_pair(ticker: str) -> tuple[str, str]:
    """(base, quote) of a normalized crypto ticker: X:BTCUSD -> ("BTC", "USD")."""
    pair = ticker[len(CRYPTO_PREFIX) :]
    for quote in CRYPTO_QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    raise ValueError(f"{ticker!r} is not a crypto pair")


def _normalize_crypto(raw: str, ticker: str) -> str:
    pair = ticker[len(CRYPTO_PREFIX) :]
    example = "expected X:<BASE><QUOTE> such as X:BTCUSD"
    if not pair:
        raise InvalidInput("INVALID_SYMBOL", f"{raw!r} names no crypto pair: {example}")
    if not _ALNUM.match(pair):
        raise InvalidInput(
            "INVALID_SYMBOL",
            f"{raw!r} is not a valid crypto pair: only letters and digits may follow 'X:', "
            f"{example}",
        )
    if not _CRYPTO_TICKER.match(ticker):
        quotes = ", ".join(CRYPTO_QUOTES)
        raise InvalidInput(
            "INVALID_SYMBOL",
            f"{raw!r} is not a valid crypto pair: a base currency of 1 to {CRYPTO_BASE_MAX} "
            f"letters or digits must be followed by a quote currency ({quotes}), {example}",
        )
    return ticker


class InvalidInput(ValueError):
    """User input that fails validation; `code` is one of the contract's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalize_ticker(raw: str) -> str:
    """Upper-case and validate a ticker such as `aapl`, `BRK.B` or the crypto pair `X:BTCUSD`."""
    ticker = raw.strip().upper()
    if ticker.startswith(CRYPTO_PREFIX):
        return _normalize_crypto(raw, ticker)
    if not _TICKER.match(ticker):
        raise InvalidInput("INVALID_SYMBOL", f"{raw!r} is not a valid ticker symbol")
    return ticker


def normalize_tickers(raw: str | list[str]) -> list[str]:
    """Split on commas, normalize, drop duplicates while keeping order."""
    items = raw.split(",") if isinstance(raw, str) else raw
    tickers = [normalize_ticker(item) for item in items if item.strip()]
    if not tickers:
        raise InvalidInput("INVALID_SYMBOL", "no ticker symbols given")
    return list(dict.fromkeys(tickers))


def parse_timeframes(raw: str) -> list[Timeframe]:
    result: list[Timeframe] = []
    for item in raw.split(","):
        try:
            result.append(Timeframe(item.strip().lower()))
        except ValueError:
            valid = ", ".join(t.value for t in Timeframe)
            raise InvalidInput(
                "INVALID_TIMEFRAME", f"unknown timeframe {item.strip()!r} (valid: {valid})"
            ) from None
    return list(dict.fromkeys(result))


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)
