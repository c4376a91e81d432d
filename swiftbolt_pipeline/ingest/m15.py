"""Fetch raw m15 bars for one symbol's session days and store them, partition by partition.

Historical days go to Polygon in coalesced windows (about 50 sessions per request); each
window's partitions and the checkpoint are committed together, so a killed fetch resumes after
the last committed window and never leaves a partition half written.

Every window's bars go through `core.clean` (explicit rules for bad provider data, counted per
rule in `SymbolIngest.rejected`). Only sessions left with at least one clean bar are replaced:
a session the provider served nothing usable for keeps what the archive has (never lose bars)
and is listed in `empty_days`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clean import OFF_GRID, CleanReport, clean_m15, merge_counts
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.core.planning import RequestWindow, plan_requests
from swiftbolt_pipeline.providers.errors import (
    MALFORMED_RESPONSE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
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
    # Bars dropped as bad provider data, per `core.clean` rule (non-zero counts only).
    rejected: dict[str, int] = field(default_factory=dict)
    # Every rule's count incl. the routine ones (extended hours, identical duplicates).
    cleaning: CleanReport = field(default_factory=CleanReport)

    def note_cleaning(self, report: CleanReport) -> None:
        self.cleaning.add(report)
        merge_counts(self.rejected, report.rejected())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


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
    sessions = [calendar.session(day) for day in window.sessions]
    bars, report = clean_m15(raw, sessions)
    result.note_cleaning(report)
    if report.wrong_interval:
        exc = wrong_interval_error(polygon.provider, report, stats.requests)
        ledger.finish_fetch(
            conn,
            fetch_id,
            actual_cost=stats.requests,
            rows_written=0,
            error_code=exc.code,
            error_message=exc.message,
        )
        conn.commit()
        raise exc
    if report.rejected():
        log.warning(
            "%s %s..%s: dropped %d bad bar(s) from %s: %s",
            symbol, window.first, window.last, report.rejected_total, polygon.provider,
            ", ".join(f"{rule}={n}" for rule, n in report.rejected().items()),
        )  # fmt: skip
    days = written_days(bars, window.sessions)
    if not days:
        # Nothing usable served: keep whatever the archive has for these days (never lose bars).
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=0)
        conn.commit()
        result.empty_days.extend(window.sessions)
        return raw.height
    with conn.transaction():
        rows = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.M15,
            days=days,
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


def wrong_interval_error(provider: str, report: CleanReport, requests: int) -> ProviderError:
    off_grid = report.counts[OFF_GRID]
    return ProviderError(
        MALFORMED_RESPONSE,
        f"{off_grid} of {off_grid + report.kept} session bars are off the 15-minute grid: "
        "the response holds another bar size; nothing stored",
        provider=provider,
        requests=requests,
    )


def written_days(bars: pl.DataFrame, sessions: Sequence[date]) -> list[date]:
    """The sessions (in order) that have at least one of `bars`: the partitions to replace."""
    if bars.is_empty():
        return []
    present = set(bars["ts"].dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date())
    return [day for day in sessions if day in present]


def _note_span(result: SymbolIngest, bars: pl.DataFrame, days: Sequence[date]) -> None:
    if bars.height:
        first, last = bars["ts"].min(), bars["ts"].max()
        result.first_ts = min(filter(None, [result.first_ts, str(first)]))
        result.last_ts = max(filter(None, [result.last_ts, str(last)]))
        present = set(bars["ts"].dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date())
    else:
        present = set()
    result.empty_days.extend(d for d in days if d not in present)
