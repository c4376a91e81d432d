"""The one d1 writer: the history provider's official daily bars per symbol x year partition,
then w1 and mo1 rolled up from what is stored.

A run's daily fetch is one request per symbol over the whole span of its days (Polygon) or one
per 50 symbols sharing that span (Alpaca), whatever the number of years: a provider's `limit`
for a day range counts days. Each symbol's d1 partitions are replaced in one transaction; a
session the provider has no bar for is left without one. Providers are tried in order: when
one is unavailable (not configured, breaker open, retries exhausted) the next one serves."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import period_sessions, rollup
from swiftbolt_pipeline.core.errors import (
    AUTH_FAILED,
    PROVIDER_UNAVAILABLE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.registry import DailyProvider
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import coverage, ledger

log = logging.getLogger(__name__)

OpenDaily = Callable[[Provider], DailyProvider]


@dataclass(frozen=True)
class DailyTask:
    """One symbol's sessions of official daily bars to fetch."""

    symbol: str
    symbol_id: int
    days: Sequence[date]


@dataclass
class DailyIngest:
    symbol: str
    days: list[date]
    provider: Provider | None = None
    bars_written: int = 0
    stats: RequestStats = field(default_factory=RequestStats)
    error: ProviderError | None = None


def fetch_daily(
    conn: psycopg.Connection,
    providers: Sequence[Provider],
    open_client: OpenDaily,
    tasks: Sequence[DailyTask],
    *,
    run_id: str,
) -> list[DailyIngest]:
    """Fetch and store every task's d1 bars; per-symbol outcomes (AUTH_FAILED raises)."""
    results = {t.symbol: DailyIngest(t.symbol, sorted(t.days)) for t in tasks}
    waiting = [t for t in tasks if t.days]
    for provider in providers:
        if not waiting:
            break
        try:
            client = open_client(provider)
        except ProviderError as exc:
            if exc.code != PROVIDER_UNAVAILABLE:
                raise
            for task in waiting:
                results[task.symbol].error = exc
            continue
        waiting = _fetch_with(conn, client, waiting, results, run_id)
    return [results[t.symbol] for t in tasks]


def _fetch_with(
    conn: psycopg.Connection,
    client: DailyProvider,
    tasks: list[DailyTask],
    results: dict[str, DailyIngest],
    run_id: str,
) -> list[DailyTask]:
    """Tasks with the same span share a request (up to `client.max_symbols`); returns those
    the provider could not serve (unavailable), for the next one."""
    left: list[DailyTask] = []
    by_span: dict[tuple[date, date], list[DailyTask]] = {}
    for task in tasks:
        by_span.setdefault((min(task.days), max(task.days)), []).append(task)
    for (first, last), group in by_span.items():
        for i in range(0, len(group), client.max_symbols):
            batch = group[i : i + client.max_symbols]
            stats = RequestStats()
            fetch_id = ledger.start_fetch(
                conn,
                run_id=run_id,
                provider=client.provider,
                symbol=",".join(t.symbol for t in batch),
                timeframe=Timeframe.D1.value,
                first=first,
                last=last,
                expected_cost=1,
            )
            conn.commit()
            written = 0
            try:
                served = client.daily_bars([t.symbol for t in batch], first, last, stats)
            except ProviderError as exc:
                ledger.finish_fetch(
                    conn, fetch_id, actual_cost=stats.requests, rows_written=0,
                    error_code=exc.code, error_message=exc.message,
                )  # fmt: skip
                conn.commit()
                if exc.code == AUTH_FAILED:
                    raise
                for task in batch:
                    results[task.symbol].error = exc
                if exc.code == PROVIDER_UNAVAILABLE:
                    left.extend(batch)
                continue
            for task in batch:
                result = results[task.symbol]
                if task is batch[0]:  # a shared request is counted once
                    result.stats.add(stats)
                bars = served.get(task.symbol, pl.DataFrame())
                if bars.is_empty():
                    result.error = ProviderError(
                        SYMBOL_NOT_FOUND,
                        f"no daily bars for {task.symbol} {first}..{last}",
                        provider=client.provider,
                    )
                    continue
                result.error, result.provider = None, client.provider
                result.bars_written = store_d1(
                    conn, task.symbol_id, task.days, bars, client.provider
                )
                written += result.bars_written
            ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=written)
            conn.commit()
    return left


def store_d1(
    conn: psycopg.Connection,
    symbol_id: int,
    days: Sequence[date],
    bars: pl.DataFrame,
    provider: Provider,
) -> int:
    """Replace the d1 partitions of `days` with the provider's bars of those days, and confirm
    each day as answered (1 bar, or 0: no bar that day), in one transaction."""
    wanted = set(days)
    exchange = pl.col("ts").dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date()
    mine = bars.filter(exchange.is_in(list(wanted)))
    served = set(mine.select(exchange)["ts"].to_list())
    with conn.transaction():
        written = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.D1,
            days=sorted(wanted),
            bars=mine,
            provider=provider.value,
            is_intraday=False,
        )
        coverage.confirm_sessions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.D1,
            bars_per_day={day: int(day in served) for day in sorted(wanted)},
            provider=provider.value,
        )
    conn.commit()
    return written


def roll_up(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    days: Sequence[date],
    timeframe: Timeframe,
) -> int:
    """Recompute the `timeframe` (w1 or mo1) bars of every period holding one of `days` from
    the stored d1 bars and replace them. Returns rows written."""
    sessions = period_sessions(days, timeframe)
    if not sessions:
        return 0
    d1 = bar_store.read_bars(conn, symbol_id, Timeframe.D1, sessions[0], sessions[-1])
    bars = rollup(d1, timeframe)
    provider = d1["provider"][0] if d1.height else Provider.POLYGON.value
    with conn.transaction():
        written = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=timeframe,
            days=sessions,
            bars=bars,
            provider=provider,
            is_intraday=False,
        )
    conn.commit()
    return written
