"""Pure aggregation and paging of base bars (no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Bars
from .sessions import MINUTE_MS


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


_AGG_FIELDS = ("t", "o", "h", "l", "c", "v", "vw", "n", "base")


def aggregate(bars: Bars, minutes: int) -> Aggregates:
    """Aggregate base bars into ``minutes``-wide buckets aligned to clock boundaries (UTC epoch,
    which equals New York wall-clock alignment for widths dividing 60). A bucket's ``t`` is its
    start; empty buckets produce no bar. A base bar wider than the bucket (5-minute real data
    asked at 1-4 minutes) stays its own bar, labelled with its own start."""
    width = minutes * MINUTE_MS
    if len(bars) == 0:
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        return Aggregates(e, f, f, f, f, e, f, e, e)
    key = np.where(bars.span * MINUTE_MS > width, bars.t, (bars.t // width) * width)
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


def page_count(base: np.ndarray, limit: int, page_size: int | None = None) -> int:
    """How many leading aggregated bars form one page: as many whole bars as fit in ``limit``
    base minute aggregates (at least one, so paging always progresses), capped at
    ``page_size`` bars when the server forces a page size."""
    if len(base) == 0:
        return 0
    count = max(1, int(np.searchsorted(np.cumsum(base), limit, side="right")))
    if page_size is not None:
        count = min(count, max(1, page_size))
    return min(count, len(base))


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
