"""What the daily automation asks for: the year partitions of d1 (with w1/mo1) a watched
symbol still lacks, minus those in flight.

A year is missing when one of its past sessions within the daily depth has no stored d1 bar
and Dagster holds no successful materialization of that symbol's year: a session the provider
has no bar for (a halt, before a listing) is no gap once its year was fetched, so nothing is
requested again and again. The current year is kept fresh by the daily schedule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
)

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.planning import keyed_symbol_batches
from swiftbolt_pipeline.names import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SYMBOLS_PARTITIONS,
    years_by_symbol,
)
from swiftbolt_pipeline.services.coverage import QUEUED_STATUSES, RUNNING_STATUSES


@dataclass(frozen=True)
class DailyGap:
    symbol: str
    first_year: int
    last_year: int
    priority: int


def missing_years(
    symbol: str,
    stored_days: Iterable[date],
    materialized: Iterable[int],
    *,
    daily_start: date,
    today: date,
) -> list[int]:
    """Years (within the daily depth) with a past session lacking its d1 bar, not fetched."""
    have = set(stored_days)
    done = set(materialized)
    yesterday = today - timedelta(days=1)
    years = {
        day.year
        for day in calendar.sessions_between(daily_start, yesterday)
        if day not in have and day.year not in done
    }
    return sorted(years)


def contiguous(years: Sequence[int]) -> list[tuple[int, int]]:
    """`[2021, 2022, 2024]` -> `[(2021, 2022), (2024, 2024)]`."""
    runs: list[tuple[int, int]] = []
    for year in sorted(years):
        if runs and year == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], year)
        else:
            runs.append((year, year))
    return runs


def daily_inflight(instance: dg.DagsterInstance) -> set[tuple[str, int]]:
    """(symbol, year) of the daily partitions that a queued or running run or an unfinished
    backfill covers."""
    covered: set[tuple[str, int]] = set()
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=QUEUED_STATUSES + RUNNING_STATUSES))
    order = list(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)) if runs else []
    for run in runs:
        start = year_key(run.tags.get(RANGE_START_TAG, ""))
        end = year_key(run.tags.get(RANGE_END_TAG, ""))
        if start is None or end is None:
            continue  # not a daily run
        symbols = {start[0], end[0]}
        if start[0] in order and end[0] in order:
            symbols.update(order[order.index(start[0]) : order.index(end[0]) + 1])
        covered.update((s, y) for s in symbols for y in range(start[1], end[1] + 1))
    unfinished = [s for s in BulkActionStatus if s not in BULK_ACTION_TERMINAL_STATUSES]
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=unfinished)):
        if backfill.asset_backfill_data is None:
            continue
        keys = {
            str(key)
            for _, key in backfill.asset_backfill_data.target_subset.iterate_asset_partitions()
            if key
        }
        covered.update(found for key in keys if (found := year_key(key)) is not None)
    return covered


def year_key(key: str) -> tuple[str, int] | None:
    """(symbol, year) of a daily partition key; None for any other key."""
    try:
        ((symbol, (year,)),) = years_by_symbol([key]).items()
    except ValueError:
        return None
    return symbol, year


def daily_gaps(
    watched: Sequence[tuple[str, int]],
    stored: Mapping[str, Iterable[date]],
    materialized: Mapping[str, Iterable[int]],
    inflight: set[tuple[str, int]],
    *,
    daily_start: date,
    today: date,
) -> list[DailyGap]:
    """Per watched (symbol, priority): contiguous missing years not in flight, highest
    priority first."""
    gaps = []
    for symbol, priority in watched:
        years = [
            y
            for y in missing_years(
                symbol,
                stored.get(symbol, ()),
                materialized.get(symbol, ()),
                daily_start=daily_start,
                today=today,
            )
            if (symbol, y) not in inflight
        ]
        gaps += [DailyGap(symbol, a, b, priority) for a, b in contiguous(years)]
    return sorted(gaps, key=lambda g: (-g.priority, g.symbol, g.first_year))


@dataclass(frozen=True)
class DailyBatch:
    """One run to request: `symbols` (one, or neighbours in the symbol partitions' order)
    sharing the same missing years and priority."""

    symbols: tuple[str, ...]
    first_year: int
    last_year: int
    priority: int


def batch_daily_gaps(gaps: Sequence[DailyGap], order: Sequence[str], size: int) -> list[DailyBatch]:
    """Gaps grouped into runs: one per symbol when the history provider serves one symbol per
    request (`size` 1); else the symbols sharing years and priority, up to `size` per run, each
    run a stretch of neighbours in `order` so that its rectangle covers exactly them. A symbol
    missing from `order` (not a partition yet) is left for a later tick."""
    known = set(order)
    placed = [g for g in gaps if g.symbol in known]
    if size == 1:
        return [DailyBatch((g.symbol,), g.first_year, g.last_year, g.priority) for g in placed]
    batches = [
        DailyBatch(tuple(batch), first, last, priority)
        for (first, last, priority), batch in keyed_symbol_batches(
            order, (((g.first_year, g.last_year, g.priority), g.symbol) for g in placed), size
        )
    ]
    return sorted(batches, key=lambda b: (-b.priority, b.first_year, b.symbols[0]))
