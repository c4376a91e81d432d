"""Bar sources for the emulator: the real 5-minute bars shipped in ``bars/`` and generated
1-minute data.

Rules (the contract tests rely on):

* **Unlisted tickers.** A symbol starting with ``ZZ`` (e.g. ``ZZNOPE``) is unknown to the
  emulator: it has no bars at all. Every other symbol is "listed".
* **Crypto pairs** (``X:`` tickers, e.g. ``X:BTCUSD``): generated around the clock, every UTC
  day; see ``crypto.py``. A pair starting with ``ZZ`` (``X:ZZNOPEUSD``) is unlisted.
* **Real data.** ``bars/bars_5min_SPY_QQQ_AAPL_MSFT_NVDA_20250512_20260312.csv.gz``, shipped
  in this package (source and layout in ``bars/README.md``), provides SPY, QQQ, AAPL, MSFT and
  NVDA. A session is served from the file when the file has that session's complete regular
  session (a bar starting 5 minutes before the close), so the partial last session
  (2026-03-12) and every session outside the file range are generated instead, scaled to join
  the real prices. The file has no VWAP or trade count; they are derived per 5-minute bar as
  ``vw = (h + l + c) / 3`` (typical price) and ``n = max(1, round(v / 100))``.
  Each 5-minute bar counts as **5 base minute aggregates** (its ``span``).
* **Generated data** (every other listed ticker, any date): deterministic 1-minute bars
  (``span`` 1), seeded from SHA-256 of ``ticker`` and ``ticker:date`` (stable across
  processes). Only XNYS sessions have bars, from 04:00 to 20:00 America/New_York (17:00 on
  early-close days). A daily anchor price (a smooth, ticker-seeded function of the date) is
  joined to the next day's anchor by a Brownian bridge of minute log-returns; a minute without a
  trade has no bar: ~99% of regular-session minutes have a bar, ~10-45% of extended minutes.
  ``vw`` and ``n`` use the same rules as above.
* Aggregates: ``vw`` = volume-weighted mean of the base ``vw``; ``n`` = sum of base ``n``.
* **Lifecycles** (set at runtime, none by default): a listed ticker may be given a first
  session (``listed_from``: no bars before, e.g. an IPO), a last session (``delisted_after``:
  no bars after) and halted sessions (no bars that day). Outside its life a ticker answers
  like a session without trades; it stays "listed" (known to the provider).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable

import numpy as np

from .sessions import MINUTE_MS, Session, sessions_between

REAL_BARS: Traversable = files("swiftbolt_pipeline.emulator").joinpath(
    "bars", "bars_5min_SPY_QQQ_AAPL_MSFT_NVDA_20250512_20260312.csv.gz"
)
UNLISTED_PREFIX = "ZZ"


def is_listed(ticker: str) -> bool:
    """Every non-empty symbol is listed except those starting with ``ZZ``."""
    return bool(ticker) and not ticker.upper().startswith(UNLISTED_PREFIX)


@dataclass(frozen=True)
class Bars:
    """Columnar base bars sorted by ``t`` (bar start, epoch ms UTC)."""

    t: np.ndarray  # int64
    o: np.ndarray  # float64
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray  # int64
    vw: np.ndarray  # float64
    n: np.ndarray  # int64
    span: np.ndarray  # int64, base minutes represented by each bar (1 or 5)

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def take(self, idx: slice | np.ndarray) -> Bars:
        return Bars(*(getattr(self, f)[idx] for f in _FIELDS))

    @staticmethod
    def empty() -> Bars:
        f, i = np.empty(0, np.float64), np.empty(0, np.int64)
        return Bars(i, f, f, f, f, i, f, i, i)

    @staticmethod
    def concat(parts: list[Bars]) -> Bars:
        if not parts:
            return Bars.empty()
        if len(parts) == 1:
            return parts[0]
        return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("t", "o", "h", "l", "c", "v", "vw", "n", "span")


def derive_vw(h: np.ndarray, l: np.ndarray, c: np.ndarray) -> np.ndarray:  # noqa: E741
    return np.clip(np.round((h + l + c) / 3.0, 4), l, h)


def derive_n(v: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.round(v / 100.0)).astype(np.int64)


# ---------------------------------------------------------------- generated bars


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@lru_cache(maxsize=4096)
def _ticker_params(ticker: str) -> tuple[float, float, tuple[float, ...]]:
    """(base price, base volume per regular minute, phases) for a ticker."""
    rng = np.random.default_rng(_seed(ticker))
    price = float(math.exp(rng.uniform(math.log(15.0), math.log(600.0))))
    volume = float(math.exp(rng.uniform(math.log(2_000.0), math.log(80_000.0))))
    phases = tuple(float(x) for x in rng.uniform(0, 2 * math.pi, 4))
    return price, volume, phases


def anchor_price(ticker: str, day_ordinal: int) -> float:
    """Smooth deterministic daily price level (04:00 price of that calendar day)."""
    base, _, ph = _ticker_params(ticker)
    d = float(day_ordinal)
    x = (
        0.15 * math.sin(2 * math.pi * d / 365.0 + ph[0])
        + 0.06 * math.sin(2 * math.pi * d / 61.0 + ph[1])
        + 0.025 * math.sin(2 * math.pi * d / 13.0 + ph[2])
        + 0.01 * math.sin(2 * math.pi * d / 4.3 + ph[3])
    )
    return base * math.exp(x)


# Days generated in one vectorized pass: bounds the pass's working arrays (~15 of
# days x 960 minutes) whatever range a request asks for.
CHUNK_DAYS = 64


@lru_cache(maxsize=4096)
def generated_day(ticker: str, s: Session, scale: float = 1.0) -> Bars:
    """Deterministic 1-minute bars of ``ticker`` on session ``s`` (cached per ticker/day:
    the truth functions ask for the same days again and again)."""
    return generated_days(ticker, [s], [scale])


def generated_days(ticker: str, days: Sequence[Session], scales: Sequence[float]) -> Bars:
    """``generated_day`` of every session in ``days`` (ascending, ``scales`` per day), bit for
    bit, in one vectorized pass per CHUNK_DAYS days: only the random draws stay per day (each
    day keeps its own ``ticker:date`` seeded stream), the arithmetic runs on a days x minutes
    matrix. A request over many days costs a fraction of a per-day loop."""
    parts = [
        _generate(ticker, days[i : i + CHUNK_DAYS], scales[i : i + CHUNK_DAYS])
        for i in range(0, len(days), CHUNK_DAYS)
    ]
    return Bars.concat(parts)


def _generate(ticker: str, days: Sequence[Session], scales: Sequence[float]) -> Bars:
    if not days:
        return Bars.empty()
    _, base_vol, _ = _ticker_params(ticker)
    ext_start = np.array([s.ext_start_ms for s in days], dtype=np.int64)[:, None]
    open_ms = np.array([s.open_ms for s in days], dtype=np.int64)[:, None]
    close_ms = np.array([s.close_ms for s in days], dtype=np.int64)[:, None]
    minutes = np.array([(s.ext_end_ms - s.ext_start_ms) // MINUTE_MS for s in days])
    width = int(minutes.max())
    col = np.arange(width, dtype=np.int64)[None, :]
    valid = col < minutes[:, None]
    # The draws, per day and in the order the per-day generator always made them.
    normals = np.zeros((len(days), width))
    wick_normals = np.zeros((len(days), 2, width))
    lognormals = np.zeros((len(days), width))
    uniforms = np.ones((len(days), width))
    for i, s in enumerate(days):
        rng = np.random.default_rng(_seed(f"{ticker}:{s.day.isoformat()}"))
        m = int(minutes[i])
        normals[i, :m] = rng.standard_normal(m)
        wick_normals[i, :, :m] = rng.standard_normal((2, m))
        lognormals[i, :m] = rng.lognormal(0.0, 0.5, m)
        uniforms[i, :m] = rng.random(m)
    t = ext_start + col * MINUTE_MS
    regular = (t >= open_ms) & (t < close_ms)
    near = ((t >= open_ms - 90 * MINUTE_MS) & (t < open_ms)) | (
        (t >= close_ms) & (t < close_ms + 60 * MINUTE_MS)
    )
    sigma = np.where(regular, 0.0007, np.where(near, 0.0004, 0.00025))
    steps = np.where(valid, normals * sigma, 0.0)
    walk = np.concatenate([np.zeros((len(days), 1)), np.cumsum(steps, axis=1)], axis=1)
    p0 = [anchor_price(ticker, s.day.toordinal()) * k for s, k in zip(days, scales, strict=True)]
    p1 = [
        anchor_price(ticker, s.day.toordinal() + 1) * k for s, k in zip(days, scales, strict=True)
    ]
    drift = np.array([math.log(b / a) for a, b in zip(p0, p1, strict=True)])[:, None]
    frac = np.arange(width + 1)[None, :] / minutes[:, None]
    end = walk[np.arange(len(days)), minutes][:, None]
    bridge = walk - frac * end + frac * drift
    price = np.array(p0)[:, None] * np.exp(bridge)
    # Everything below is per bar: only the minutes that trade (about half) are computed,
    # gathered once by flat index (row-major: day by day, minute by minute).
    present = valid & (uniforms < np.where(regular, 0.99, np.where(near, 0.45, 0.10)))
    at = np.flatnonzero(present)
    row, minute = np.divmod(at, width)
    flat_price = price.ravel()  # width + 1 columns: a minute's open and close prices
    o, c = np.round(flat_price[at + row], 2), np.round(flat_price[at + row + 1], 2)
    sig = sigma.ravel()[at]
    wicks = wick_normals.ravel()  # per day: `width` high wicks, then `width` low wicks
    up, down = np.maximum(o, c), np.minimum(o, c)
    h = np.maximum(np.round(up * (1 + np.abs(wicks[at + row * width]) * sig * 0.6), 2), up)
    low = np.minimum(
        np.round(down * (1 - np.abs(wicks[at + row * width + width]) * sig * 0.6), 2), down
    )
    low = np.maximum(low, 0.01)
    level = np.where(near.ravel()[at], 0.03, 0.008)
    reg = regular.ravel()[at]
    reg_len = ((close_ms - open_ms) // MINUTE_MS)[:, 0]
    k = minute - ((open_ms - ext_start) // MINUTE_MS)[row, 0]  # minutes since the open
    for n in np.unique(reg_len):
        sel = reg & (reg_len[row] == n)
        level[sel] = _u_shape(int(n))[k[sel]]
    v = np.maximum(1, np.round(base_vol * level * lognormals.ravel()[at])).astype(np.int64)
    return Bars(
        t.ravel()[at], o, h, low, c, v, derive_vw(h, low, c), derive_n(v),
        np.ones(len(v), dtype=np.int64),
    )  # fmt: skip


@lru_cache(maxsize=8)
def _u_shape(regular_minutes: int) -> np.ndarray:
    """Relative volume of each regular-session minute: high after the open, higher into the
    close (one table per session length, looked up per bar)."""
    k = np.arange(regular_minutes, dtype=np.int64)
    return 1.0 + 2.0 * np.exp(-k / 20.0) + 1.5 * np.exp(-(regular_minutes - k) / 15.0)


# ---------------------------------------------------------------- real data


@dataclass(frozen=True)
class _TickerData:
    days: dict[date, Bars]  # complete real sessions only
    first_day: date
    last_day: date
    first_open: float
    last_close: float


_real_lock = threading.Lock()  # one parse of the file even when the first requests race


def _real_data() -> dict[str, _TickerData]:
    with _real_lock:
        return _read_real()


@cache
def _read_real() -> dict[str, _TickerData]:
    import polars as pl

    from .sessions import session

    df = pl.read_csv(
        REAL_BARS.read_bytes(),
        columns=["ticker", "t", "o", "h", "l", "c", "v"],
        schema_overrides={"t": pl.Int64, "v": pl.Int64},
    ).sort("ticker", "t")
    df = df.with_columns(
        pl.from_epoch("t", time_unit="ms")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone("America/New_York")
        .dt.date()
        .alias("day")
    )
    out: dict[str, _TickerData] = {}
    for (ticker,), g in df.group_by("ticker", maintain_order=True):
        days: dict[date, Bars] = {}
        for (day,), dg in g.group_by("day", maintain_order=True):
            s = session(day)
            t = dg["t"].to_numpy()
            if s is None or not np.any(t == s.close_ms - 5 * MINUTE_MS):
                continue  # partial or non-session day: generated instead
            h, low, c = (dg[x].to_numpy().astype(np.float64) for x in ("h", "l", "c"))
            v = dg["v"].to_numpy().astype(np.int64)
            days[day] = Bars(
                t.astype(np.int64),
                dg["o"].to_numpy().astype(np.float64),
                h,
                low,
                c,
                v,
                derive_vw(h, low, c),
                derive_n(v),
                np.full(len(t), 5, dtype=np.int64),
            )
        if not days:
            continue
        first, last = min(days), max(days)
        out[str(ticker)] = _TickerData(
            days, first, last, float(days[first].o[0]), float(days[last].c[-1])
        )
    return out


# ---------------------------------------------------------------- lifecycles


@dataclass(frozen=True)
class Lifecycle:
    """When a ticker trades: from ``listed_from`` through ``delisted_after`` (inclusive, None:
    unbounded), except the ``halted`` sessions."""

    listed_from: date | None = None
    delisted_after: date | None = None
    halted: frozenset[date] = frozenset()

    def trades_on(self, day: date) -> bool:
        if self.listed_from is not None and day < self.listed_from:
            return False
        if self.delisted_after is not None and day > self.delisted_after:
            return False
        return day not in self.halted

    @staticmethod
    def parse(data: object) -> tuple[str, Lifecycle]:
        """``{"ticker", "listed_from"?, "delisted_after"?, "halted"?: [dates]}`` from the admin
        API; ``ValueError`` with a readable message otherwise."""
        if not isinstance(data, dict):
            raise ValueError("a lifecycle is a JSON object")
        unknown = set(data) - {"ticker", "listed_from", "delisted_after", "halted"}
        if unknown:
            raise ValueError(f"unknown lifecycle keys: {sorted(unknown)}")
        ticker = data.get("ticker")
        if not isinstance(ticker, str) or not is_listed(ticker.strip()):
            raise ValueError("ticker must be a listed symbol (not starting with ZZ)")
        halted = data.get("halted", [])
        if not isinstance(halted, list):
            raise ValueError("halted must be a list of YYYY-MM-DD dates")
        life = Lifecycle(
            _opt_day(data.get("listed_from"), "listed_from"),
            _opt_day(data.get("delisted_after"), "delisted_after"),
            frozenset(_day(d, "halted") for d in halted),
        )
        if life.listed_from and life.delisted_after and life.delisted_after < life.listed_from:
            raise ValueError("delisted_after is before listed_from")
        return ticker.strip().upper(), life

    def to_json(self) -> dict[str, object]:
        return {
            "listed_from": self.listed_from.isoformat() if self.listed_from else None,
            "delisted_after": self.delisted_after.isoformat() if self.delisted_after else None,
            "halted": sorted(d.isoformat() for d in self.halted),
        }


def _day(raw: object, name: str) -> date:
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"{name} must be YYYY-MM-DD") from None


def _opt_day(raw: object, name: str) -> date | None:
    return None if raw is None else _day(raw, name)


# ---------------------------------------------------------------- the store

_STOCK_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


def _is_stock(ticker: str) -> bool:
    """A listed stock ticker (``X:`` pairs, Alpaca's ``BTC/USD`` and ``ZZ`` tickers are not)."""
    return bool(_STOCK_TICKER.match(ticker)) and is_listed(ticker)


class BarStore:
    """Serves base bars for any listed ticker; real data where available, else generated.

    Every listed ticker has bars, so a market-wide answer (Polygon's grouped daily) needs a
    finite list: the tickers the store **knows** are the real-data ones, every stock ticker a
    provider request has named since the last reset (``note``) and those registered through
    the admin API (``POST /_emulator/tickers``) or given a lifecycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lifecycles: dict[str, Lifecycle] = {}
        self._noted: set[str] = set()

    def note(self, tickers: Iterable[str]) -> None:
        """Remember listed stock tickers (crypto pairs and unlisted ones are left out)."""
        stocks = {t for t in (raw.strip().upper() for raw in tickers) if _is_stock(t)}
        if stocks - self._noted:
            with self._lock:
                self._noted |= stocks

    def forget_noted(self) -> None:
        with self._lock:
            self._noted.clear()

    def known_tickers(self) -> list[str]:
        """The tickers a market-wide answer lists, sorted."""
        with self._lock:
            known = self._noted | {t for t in self._lifecycles if _is_stock(t)}
        return sorted(known | set(_real_data()))

    def set_lifecycle(self, ticker: str, lifecycle: Lifecycle | None) -> None:
        """Give ``ticker`` a lifecycle (None: trades on every session again)."""
        with self._lock:
            if lifecycle is None:
                self._lifecycles.pop(ticker.upper(), None)
            else:
                self._lifecycles[ticker.upper()] = lifecycle

    def lifecycle(self, ticker: str) -> Lifecycle | None:
        return self._lifecycles.get(ticker.upper())

    def lifecycles(self) -> dict[str, Lifecycle]:
        with self._lock:
            return dict(sorted(self._lifecycles.items()))

    def clear_lifecycles(self) -> None:
        with self._lock:
            self._lifecycles.clear()

    def day_bars(self, ticker: str, s: Session) -> Bars:
        ticker = ticker.upper()
        source = self._source(ticker, s)
        if source is None:
            return Bars.empty()
        if isinstance(source, Bars):
            return source
        return generated_day(ticker, s, source)

    def _source(self, ticker: str, s: Session) -> Bars | float | None:
        """Where ``ticker``'s (upper-case) bars of ``s`` come from: None (no bars), the real
        day's bars, or the scale of its generated day."""
        if not is_listed(ticker):
            return None
        life = self._lifecycles.get(ticker)
        if life is not None and not life.trades_on(s.day):
            return None
        real = _real_data().get(ticker)
        if real is None:
            return 1.0
        if s.day in real.days:
            return real.days[s.day]
        if s.day < real.first_day:
            scale = real.first_open / anchor_price(ticker, real.first_day.toordinal())
        else:
            scale = real.last_close / anchor_price(ticker, real.last_day.toordinal() + 1)
        return round(scale, 12)

    def bars(self, ticker: str, start_ms: int, end_ms: int) -> Bars:
        """Base bars with ``start_ms <= t < end_ms``, sorted by ``t``. Consecutive generated
        days are generated together (``generated_days``)."""
        if not is_listed(ticker):
            return Bars.empty()
        if ticker.upper().startswith("X:"):  # a crypto pair: every UTC minute (crypto.py)
            from .crypto import crypto_bars, is_listed_pair  # crypto.py builds on this module

            listed = is_listed_pair(ticker)
            return crypto_bars(ticker, start_ms, end_ms) if listed else Bars.empty()
        ticker = ticker.upper()
        parts: list[Bars] = []
        run: list[Session] = []
        scales: list[float] = []
        for s in sessions_between(start_ms, end_ms):
            source = self._source(ticker, s)
            if source is None or isinstance(source, Bars):
                if run:
                    parts.append(generated_days(ticker, run, scales))
                    run, scales = [], []
                if source is not None:
                    parts.append(source)
                continue
            run.append(s)
            scales.append(source)
        if run:
            parts.append(generated_days(ticker, run, scales))
        b = Bars.concat([p for p in parts if len(p)])
        if len(b) and (b.t[0] < start_ms or b.t[-1] >= end_ms):
            lo = int(np.searchsorted(b.t, start_ms, side="left"))
            hi = int(np.searchsorted(b.t, end_ms, side="left"))
            b = b.take(slice(lo, hi))
        return b
