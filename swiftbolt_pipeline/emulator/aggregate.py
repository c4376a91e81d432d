"""Pure aggregation and paging of base bars (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from .data import Bars
from .sessions import MINUTE_MS, NY, day_start_ms, sessions_between


@dataclass(frozen=True)
class Aggregates:
    """Clock-aligned aggregated bars; ``base`` = base minute aggregates inside each bar."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray
    vw: np.ndarray
    n: np.ndarray
    base: np.ndarray

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def take(self, idx: slice | np.ndarray) -> Aggregates:
        return Aggregates(*(getattr(self, f)[idx] for f in _AGG_FIELDS))

    @staticmethod
    def concat(parts: list[Aggregates]) -> Aggregates:
        if not parts:
            return _empty()
        if len(parts) == 1:
            return parts[0]
        return Aggregates(*(np.concatenate([getattr(p, f) for p in parts]) for f in _AGG_FIELDS))


_AGG_FIELDS = ("t", "o", "h", "l", "c", "v", "vw", "n", "base")


def aggregate(bars: Bars, minutes: int) -> Aggregates:
    """Aggregate base bars into ``minutes``-wide buckets aligned to clock boundaries (UTC epoch,
    which equals New York wall-clock alignment for widths dividing 60). A bucket's ``t`` is its
    start; empty buckets produce no bar. A base bar wider than the bucket (5-minute real data
    asked at 1-4 minutes) stays its own bar, labelled with its own start."""
    width = minutes * MINUTE_MS
    if len(bars) == 0:
        return _empty()
    key = np.where(bars.span * MINUTE_MS > width, bars.t, (bars.t // width) * width)
    return _reduce(bars, key)


def aggregate_daily(bars: Bars) -> Aggregates:
    """One bar per America/New_York day holding base bars (a session's whole extended window,
    04:00-20:00 ET), ``t`` = that day's local midnight in epoch ms, as Polygon labels daily
    aggregates. Each day counts as ONE base aggregate (``base``): for a day timespan the
    aggregates ``limit`` counts are days."""
    if len(bars) == 0:
        return _empty()
    windows = sessions_between(int(bars.t[0]), int(bars.t[-1]) + 1)
    starts = np.array([s.ext_start_ms for s in windows], dtype=np.int64)
    midnights = np.array([day_start_ms(s.day) for s in windows], dtype=np.int64)
    key = midnights[np.searchsorted(starts, bars.t, side="right") - 1]
    daily = _reduce(bars, key)
    return replace(daily, base=np.ones(len(daily), dtype=np.int64))


def _empty() -> Aggregates:
    e = np.empty(0, np.int64)
    f = np.empty(0, np.float64)
    return Aggregates(e, f, f, f, f, e, f, e, e)


def _reduce(bars: Bars, key: np.ndarray) -> Aggregates:
    """Consecutive base bars with the same ``key`` form one aggregate labelled ``key``."""
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    ends = np.concatenate((starts[1:], [len(key)])) - 1
    v = np.add.reduceat(bars.v, starts)
    pv = np.add.reduceat(bars.v * bars.vw, starts)
    h = np.maximum.reduceat(bars.h, starts)
    low = np.minimum.reduceat(bars.l, starts)
    vw = np.clip(np.round(pv / np.maximum(v, 1), 4), low, h)
    return Aggregates(
        key[starts],
        bars.o[starts],
        h,
        low,
        bars.c[ends],
        v,
        vw,
        np.add.reduceat(bars.n, starts),
        np.add.reduceat(bars.span, starts),
    )


def bucket_start(t_ms: int, minutes: int | None) -> int:
    """Start of the bucket holding ``t_ms``: a multiple of the width (``aggregate``), or the
    New York midnight of its day (``minutes`` None, ``aggregate_daily``)."""
    if minutes is None:
        return day_start_ms(datetime.fromtimestamp(t_ms / 1000, NY).date())
    width = minutes * MINUTE_MS
    return t_ms // width * width


def bucket_step(start_ms: int, minutes: int | None, n: int) -> int:
    """The bucket start ``n`` buckets after (negative: before) the bucket start ``start_ms``."""
    if minutes is None:
        day = datetime.fromtimestamp(start_ms / 1000, NY).date()
        return day_start_ms(day + timedelta(days=n))
    return start_ms + n * minutes * MINUTE_MS


# The smallest chunk a walk takes, in buckets: a page needing a few more bars still takes a
# chunk big enough that its fixed cost (finding sessions, one vectorized pass) stays small.
MIN_CHUNK_BUCKETS = 256


class AggregateWalk:
    """One ticker's aggregated bars over ``[first, stop)``, chunk by chunk in time order (or
    reverse time order, ``descending``), so a page costs about the bars it serves instead of
    the whole range. Chunk bounds inside the range are bucket starts, so no bucket straddles
    two chunks: the chunks, concatenated, are the aggregates of the whole range. ``fetch``
    gives the base bars of ``[lo, hi)``."""

    def __init__(
        self,
        fetch: Callable[[int, int], Bars],
        minutes: int | None,
        first: int,
        stop: int,
        descending: bool,
    ) -> None:
        self._fetch = fetch
        self._minutes = minutes
        self._lo, self._hi = first, stop  # the part not walked yet
        self._descending = descending
        self._floor = MIN_CHUNK_BUCKETS

    def next(self, wanted: int) -> Aggregates | None:
        """The next chunk (possibly empty), at least ``wanted`` buckets wide -- a bucket holds
        at most one bar, so a page wanting ``wanted`` bars takes no more than it needs -- or
        None once the range is walked. After an empty chunk the next is twice as wide, so an
        empty range (no session, a delisted ticker) is crossed in a few chunks."""
        if self._lo >= self._hi:
            return None
        buckets = max(wanted, self._floor)
        if self._descending:
            last = bucket_start(self._hi - 1, self._minutes)
            lo, hi = max(self._lo, bucket_step(last, self._minutes, 1 - buckets)), self._hi
            self._hi = lo
        else:
            first = bucket_start(self._lo, self._minutes)
            lo, hi = self._lo, min(self._hi, bucket_step(first, self._minutes, buckets))
            self._lo = hi
        base = self._fetch(lo, hi)
        aggs = aggregate_daily(base) if self._minutes is None else aggregate(base, self._minutes)
        if len(aggs) == 0:
            self._floor = 2 * buckets
        return aggs.take(slice(None, None, -1)) if self._descending else aggs


def page_by_base_minutes(
    walk: AggregateWalk, limit: int, page_size: int | None
) -> tuple[Aggregates, int | None]:
    """The page's bars -- as many whole bars as fit in ``limit`` base minute aggregates, at
    least one so paging always progresses, at most ``page_size`` when the server forces a page
    size -- and where the next page starts (None: no bar left). The walk stops at the first
    bar past the page."""
    most = limit if page_size is None else min(limit, max(1, page_size))  # bars (base >= 1)
    taken: list[Aggregates] = []
    count = base = 0
    while (aggs := walk.next(most - count)) is not None:
        fits = int(np.searchsorted(base + np.cumsum(aggs.base), limit, side="right"))
        n = min(len(aggs), most - count, max(fits, 1 if count == 0 else 0))
        if n:
            taken.append(aggs.take(slice(0, n)))
            count, base = count + n, base + int(taken[-1].base.sum())
        if n < len(aggs):
            return Aggregates.concat(taken), int(aggs.t[n])
    return Aggregates.concat(taken), None


Row = tuple[int, float, float, float, float, int, float, int]


def rows(aggs: Aggregates) -> list[Row]:
    """``(t, o, h, l, c, v, vw, n)`` per bar as JSON-ready Python numbers, prices rounded to
    4 decimals as every provider's API serves them."""
    return list(
        zip(
            aggs.t.tolist(),
            _round_prices(aggs.o),
            _round_prices(aggs.h),
            _round_prices(aggs.l),
            _round_prices(aggs.c),
            aggs.v.tolist(),
            _round_prices(aggs.vw),
            aggs.n.tolist(),
            strict=True,
        )
    )


def _round_prices(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.round(x, 4).tolist()]


def bars_json(aggs: Aggregates, keys: tuple[str, ...], *, rfc3339: bool = False) -> str:
    """The bars as a JSON array of objects with ``keys`` (any of ``t o h l c v vw n``) in that
    order: the values of ``rows`` (prices rounded to 4 decimals, shortest round-trip floats),
    ``t`` in epoch ms or, with ``rfc3339``, as ``2025-06-02T13:30:00Z``. Encoded in one
    vectorized pass (a Python dict per bar cost more than generating the bars)."""
    if len(aggs) == 0:
        return "[]"
    t: np.ndarray | pl.Series = aggs.t
    if rfc3339:
        t = pl.Series(aggs.t).cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    columns = {
        "t": t,
        "o": np.round(aggs.o, 4),
        "h": np.round(aggs.h, 4),
        "l": np.round(aggs.l, 4),
        "c": np.round(aggs.c, 4),
        "v": aggs.v,
        "vw": np.round(aggs.vw, 4),
        "n": aggs.n,
    }
    return pl.DataFrame({key: columns[key] for key in keys}).write_json()
