"""Fetch raw m15 bars for one symbol's session days and store them, partition by partition.

Historical days go to Polygon in coalesced windows (about 50 sessions per request); each
window's partitions and the checkpoint are committed together, so a killed fetch resumes after
the last committed window and never leaves a partition half written."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.core.planning import RequestWindow, plan_requests
from swiftbolt_pipeline.core.resample import regular_session
from swiftbolt_pipeline.providers.errors import SYMBOL_NOT_FOUND, ProviderError
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import ledger

log = logging.getLogger(__name__)


@dataclass
class SymbolIngest:
    """What one symbol's fetch did, for metadata, the ledger summary and the CLI."""

    symbol: str
    days: list[date]
    provider: str = "polygon"
    bars_written: int = 0
    expected_requests: int = 0
    stats: RequestStats = field(default_factory=RequestStats)
    resumed_days: int = 0
    empty_days: list[date] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None


def ingest_history(
    conn: psycopg.Connection,
    polygon: PolygonClient,
    *,
    run_id: str,
    symbol: str,
    symbol_id: int,
    days: Sequence[date],
) -> SymbolIngest:
    """Fetch and store m15 bars of `symbol` for historical session `days` from Polygon."""
    result = SymbolIngest(symbol=symbol, days=sorted(days))
    todo = _skip_resumed(conn, symbol, result)
    windows = plan_requests(todo)
    result.expected_requests = len(windows)
    received = 0
    for window in windows:
        received += _fetch_window(conn, polygon, run_id, symbol_id, window, result)
    if windows and received == 0:
        raise ProviderError(
            SYMBOL_NOT_FOUND,
            f"no bars for {symbol} from {todo[0]} to {todo[-1]}: unknown or untraded ticker",
            provider=polygon.provider,
            requests=result.stats.requests,
        )
    ledger.clear_checkpoint(conn, polygon.provider, symbol, Timeframe.M15.value)
    conn.commit()
    return result


def _fetch_window(
    conn: psycopg.Connection,
    polygon: PolygonClient,
    run_id: str,
    symbol_id: int,
    window: RequestWindow,
    result: SymbolIngest,
) -> int:
    """One planned request (plus the pages and retries it takes); returns bars received."""
    symbol = result.symbol
    stats = RequestStats()
    fetch_id = ledger.start_fetch(
        conn,
        run_id=run_id,
        provider=polygon.provider,
        symbol=symbol,
        timeframe=Timeframe.M15.value,
        first=window.first,
        last=window.last,
        expected_cost=1,
    )
    conn.commit()
    try:
        raw = polygon.fetch_m15(symbol, window.first, window.last, stats)
    except ProviderError as exc:
        ledger.finish_fetch(
            conn,
            fetch_id,
            actual_cost=stats.requests,
            rows_written=0,
            error_code=exc.code,
            error_message=exc.message,
        )
        conn.commit()
        raise
    finally:
        result.stats.add(stats)
    if raw.is_empty():
        # Nothing served: keep whatever the archive has for these days (never lose bars).
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=0)
        conn.commit()
        result.empty_days.extend(window.sessions)
        return 0
    sessions = [calendar.session(day) for day in window.sessions]
    bars = regular_session(raw.unique("ts", keep="last"), sessions).sort("ts")
    with conn.transaction():
        rows = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.M15,
            days=window.sessions,
            bars=bars,
            provider=polygon.provider,
            is_intraday=False,
        )
        # Committed with the bars: a killed fetch resumes after this window.
        ledger.advance_checkpoint(
            conn,
            polygon.provider,
            symbol,
            Timeframe.M15.value,
            range_start=result.days[0],
            last_ts=sessions[-1].close,
            bars=rows,
        )
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=rows)
    conn.commit()
    result.bars_written += rows
    _note_span(result, bars, window.sessions)
    log.info(
        "%s %s..%s: %d bars in %d request(s), waited %.1fs for tokens",
        symbol, window.first, window.last, rows, stats.requests, stats.token_wait_s,
    )  # fmt: skip
    return raw.height


def _skip_resumed(conn: psycopg.Connection, symbol: str, result: SymbolIngest) -> list[date]:
    """Days still to fetch: those a killed fetch of this symbol already committed are skipped."""
    saved = ledger.checkpoint(conn, "polygon", symbol, Timeframe.M15.value)
    if saved is None:
        return result.days
    range_start, last_ts = saved
    done_through = calendar.exchange_date(last_ts)
    todo = [d for d in result.days if not (range_start <= d <= done_through)]
    result.resumed_days = len(result.days) - len(todo)
    if result.resumed_days:
        log.info(
            "%s: resuming after %s, %d day(s) already stored",
            symbol,
            done_through,
            result.resumed_days,
        )
    return todo


def _note_span(result: SymbolIngest, bars: pl.DataFrame, days: Sequence[date]) -> None:
    if bars.height:
        first, last = bars["ts"].min(), bars["ts"].max()
        result.first_ts = min(filter(None, [result.first_ts, str(first)]))
        result.last_ts = max(filter(None, [result.last_ts, str(last)]))
        present = set(bars["ts"].dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date())
    else:
        present = set()
    result.empty_days.extend(d for d in days if d not in present)
