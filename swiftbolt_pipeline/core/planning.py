"""Request planning: coalesce missing sessions into few provider requests.

Polygon's `limit` counts base minute aggregates (at most 50,000) including extended hours, so
one request can cover about 52 full sessions. Planning per contiguous run of sessions keeps the
request count near ceil(minutes / 50,000) instead of one request per day.

The bar size does not change a plan: Polygon's `limit` counts base minutes whatever the
multiplier, so 5-minute bars (the opt-in m5) take exactly the windows of m15. A window holds
at most 50,000 base minutes, i.e. at most 10,000 five-minute bars of one symbol: Alpaca's page
size, so one symbol's m5 window is one Alpaca request too (a batch of many symbols pages by
bars, 3x as often at 5 minutes as at 15; see `worst_case_bars`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import TypeVar

from swiftbolt_pipeline.core.calendar import session, sessions_between

K = TypeVar("K", bound=Hashable)

POLYGON_BASE_MINUTE_LIMIT = 50_000
# Alpaca's `limit`: bars (of every symbol of a request) per page.
ALPACA_PAGE_BARS = 10_000


def _sessions_sorted(days: Iterable[date]) -> list[date]:
    """Distinct dates in order; refuses a date with no session (never a partition key)."""
    ordered = sorted(set(days))
    if ordered:
        known = _positions(ordered[0], ordered[-1])
        strays = [d.isoformat() for d in ordered if d not in known]
        if strays:
            raise ValueError(f"not NYSE trading sessions: {', '.join(strays[:5])}")
    return ordered


# A sensor tick groups every watched symbol's missing sessions, mostly over the same window.
@functools.lru_cache(maxsize=1024)
def _positions(first: date, last: date) -> Mapping[date, int]:
    """Each session in [first, last] -> its index among them."""
    return MappingProxyType({d: i for i, d in enumerate(sessions_between(first, last))})


def contiguous_runs(days: Iterable[date]) -> list[list[date]]:
    """Group session dates into runs with no session missing between neighbours.

    Weekends and holidays between two sessions do not break a run (there is nothing to fetch
    there); a session left out does. Input order and duplicates do not matter.
    """
    ordered = _sessions_sorted(days)
    if not ordered:
        return []
    position = _positions(ordered[0], ordered[-1])
    runs: list[list[date]] = [[ordered[0]]]
    for previous, day in itertools.pairwise(ordered):
        if position[day] == position[previous] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


@dataclass(frozen=True)
class RequestWindow:
    """One provider request: sessions `first`..`last` of one contiguous run.

    `max_base_minutes` is this window's worst case, the sum of its sessions' extended-hours
    minutes (every minute traded), which the planner keeps within the provider's limit.
    """

    first: date
    last: date
    sessions: tuple[date, ...]
    max_base_minutes: int


def plan_requests(
    days: Iterable[date], max_base_minutes: int = POLYGON_BASE_MINUTE_LIMIT
) -> list[RequestWindow]:
    """Pack each contiguous run greedily into windows of at most `max_base_minutes`.

    Greedy in date order is optimal here: within a run, any packing needs at least as many
    windows as filling each one as far as it goes. Raises ValueError when a single session
    does not fit the budget.
    """
    windows: list[RequestWindow] = []
    for run in contiguous_runs(days):
        batch: list[date] = []
        minutes = 0
        for day in run:
            cost = session(day).extended_minutes
            if cost > max_base_minutes:
                raise ValueError(
                    f"{day.isoformat()} needs {cost} base minutes, over the budget of "
                    f"{max_base_minutes}"
                )
            if batch and minutes + cost > max_base_minutes:
                windows.append(RequestWindow(batch[0], batch[-1], tuple(batch), minutes))
                batch, minutes = [], 0
            batch.append(day)
            minutes += cost
        windows.append(RequestWindow(batch[0], batch[-1], tuple(batch), minutes))
    return windows


def expected_cost(days: Iterable[date], max_base_minutes: int = POLYGON_BASE_MINUTE_LIMIT) -> int:
    """The number of requests `plan_requests` makes, before pages a server may force."""
    return len(plan_requests(days, max_base_minutes))


def worst_case_bars(window: RequestWindow, bar_minutes: int) -> int:
    """The most bars of `bar_minutes` one symbol can have in `window` (every extended-hours
    minute traded): what a bar-counting page limit (Alpaca's) sees of it."""
    return sum(-(-session(day).extended_minutes // bar_minutes) for day in window.sessions)


def base_minute_floor(days: Iterable[date]) -> int:
    """ceil(worst-case base minutes / 50,000): the least requests any plan could make.

    Benchmarks compare the planned and the actual request count against this floor.
    """
    total = sum(session(day).extended_minutes for day in _sessions_sorted(days))
    return math.ceil(total / POLYGON_BASE_MINUTE_LIMIT)


def symbol_batches(order: Sequence[str], wanted: Iterable[str], size: int) -> list[list[str]]:
    """`wanted` symbols cut into batches of at most `size`, each a contiguous stretch of
    `order` (the symbol partitions in Dagster's order), in that order.

    A run covers a rectangle: every symbol partition from its first to its last symbol, by
    `order`. Batches made of neighbours in `order` therefore cover exactly the wanted symbols;
    a symbol missing from `order` has no place in any rectangle and is left out."""
    if size < 1:
        raise ValueError(f"batch size must be positive, not {size}")
    chosen = set(wanted)
    batches: list[list[str]] = []
    current: list[str] = []
    for symbol in order:
        if symbol in chosen and len(current) < size:
            current.append(symbol)
            continue
        if current:
            batches.append(current)
        current = [symbol] if symbol in chosen else []
    if current:
        batches.append(current)
    return batches


def keyed_symbol_batches(
    order: Sequence[str], wanted: Iterable[tuple[K, str]], size: int
) -> list[tuple[K, list[str]]]:
    """`symbol_batches` per key: the symbols of `wanted` (key, symbol) pairs that share a key
    (a gap, a range of years, a priority), cut into batches of neighbours in `order`. Keys in
    the order first seen."""
    grouped: dict[K, list[str]] = {}
    for key, symbol in wanted:
        grouped.setdefault(key, []).append(symbol)
    return [
        (key, batch)
        for key, symbols in grouped.items()
        for batch in symbol_batches(order, symbols, size)
    ]


def symbol_span(order: Sequence[str], symbols: Iterable[str]) -> tuple[str, str]:
    """The first and last of `symbols` by `order` (the symbol partitions in Dagster's order):
    the ends of the narrowest run rectangle covering all of them."""
    position = {symbol: i for i, symbol in enumerate(order)}
    placed = sorted(position[s] for s in set(symbols) if s in position)
    if not placed:
        raise ValueError("none of the symbols is a partition")
    return order[placed[0]], order[placed[-1]]
