"""Crypto pairs in the emulator: generated 1-minute bars for every UTC minute, 24/7.

Where the data comes from: it is **generated**, not recorded (no public BTC minute series
small enough to ship was found). For an ``X:`` ticker (Polygon's crypto pairs, e.g.
``X:BTCUSD``; Alpaca names the same pair ``BTC/USD``) every UTC day, weekends and US holidays
included, has deterministic 1-minute bars seeded from SHA-256 of ``ticker:date`` (stable
across processes): a daily anchor price (a smooth, ticker-seeded function of the date, around
60,000 for BTC-like pairs) joined to the next day's anchor by a Brownian bridge of minute
log-returns. About 98% of minutes have a trade (a bar); the others have none. A pair whose
base starts with ``ZZ`` (``X:ZZNOPEUSD``) is unlisted: no bars at all. Volumes are
whole units (the stored volume is an integer), ``vw`` and ``n`` follow ``data.py``'s rules.

Polygon serves them on the stock aggregates endpoint; Alpaca on
``GET /v1beta3/crypto/us/bars?symbols=BTC/USD&timeframe=15Min&start=..&end=..``
(``alpaca_crypto_symbol`` maps the slash pair back to the ``X:`` ticker)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from .data import Bars, _seed, derive_n, derive_vw
from .sessions import MINUTE_MS

PREFIX = "X:"
DAY_MS = 24 * 60 * MINUTE_MS
PRESENT = 0.98


def is_crypto(ticker: str) -> bool:
    return ticker.upper().startswith(PREFIX)


def is_listed_pair(ticker: str) -> bool:
    """Every pair is listed except those whose base starts with ``ZZ`` (``X:ZZNOPEUSD``)."""
    return not ticker.upper().removeprefix(PREFIX).startswith("ZZ")


def alpaca_crypto_symbol(symbol: str) -> str:
    """Alpaca's ``BTC/USD`` as the ``X:BTCUSD`` ticker the bars are generated for."""
    return PREFIX + symbol.upper().replace("/", "")


@lru_cache(maxsize=1024)
def _params(ticker: str) -> tuple[float, float, tuple[float, ...]]:
    """(base price, base volume per minute, phases) for a pair."""
    rng = np.random.default_rng(_seed(f"crypto:{ticker}"))
    price = float(math.exp(rng.uniform(math.log(20_000.0), math.log(90_000.0))))
    volume = float(rng.uniform(5.0, 40.0))
    phases = tuple(float(x) for x in rng.uniform(0, 2 * math.pi, 3))
    return price, volume, phases


def anchor_price(ticker: str, day: date) -> float:
    """The pair's price at 00:00 UTC of `day`: smooth and deterministic."""
    base, _, ph = _params(ticker)
    d = float(day.toordinal())
    x = (
        0.25 * math.sin(2 * math.pi * d / 365.0 + ph[0])
        + 0.08 * math.sin(2 * math.pi * d / 29.0 + ph[1])
        + 0.03 * math.sin(2 * math.pi * d / 6.1 + ph[2])
    )
    return base * math.exp(x)


@lru_cache(maxsize=4096)
def crypto_day(ticker: str, day: date) -> Bars:
    """Deterministic 1-minute bars of the pair on UTC `day` (cached per ticker and day)."""
    ticker = ticker.upper()
    rng = np.random.default_rng(_seed(f"{ticker}:{day.isoformat()}"))
    _, base_vol, _ = _params(ticker)
    m = 24 * 60
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    t = start + np.arange(m, dtype=np.int64) * MINUTE_MS
    sigma = 0.0006
    walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(m) * sigma)])
    p0, p1 = anchor_price(ticker, day), anchor_price(ticker, day + timedelta(days=1))
    frac = np.arange(m + 1) / m
    price = p0 * np.exp(walk - frac * walk[-1] + frac * math.log(p1 / p0))
    o, c = np.round(price[:-1], 2), np.round(price[1:], 2)
    wick = np.abs(rng.standard_normal((2, m))) * sigma * 0.6
    h = np.maximum(np.round(np.maximum(o, c) * (1 + wick[0]), 2), np.maximum(o, c))
    low = np.minimum(np.round(np.minimum(o, c) * (1 - wick[1]), 2), np.minimum(o, c))
    v = np.maximum(1, np.round(base_vol * rng.lognormal(0.0, 0.6, m))).astype(np.int64)
    present = rng.random(m) < PRESENT
    bars = Bars(t, o, h, low, c, v, derive_vw(h, low, c), derive_n(v), np.ones(m, np.int64))
    return bars.take(present)


def crypto_bars(ticker: str, start_ms: int, end_ms: int) -> Bars:
    """Base bars of the pair with ``start_ms <= t < end_ms``, sorted by ``t``."""
    if end_ms <= start_ms:
        return Bars.empty()
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).date()
    parts = []
    for n in range((last - first).days + 1):
        b = crypto_day(ticker, first + timedelta(days=n))
        lo = int(np.searchsorted(b.t, start_ms, side="left"))
        hi = int(np.searchsorted(b.t, end_ms, side="left"))
        if hi > lo:
            parts.append(b.take(slice(lo, hi)))
    return Bars.concat(parts)
