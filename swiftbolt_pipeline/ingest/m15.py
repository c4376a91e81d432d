"""Fetch raw m15 bars for one symbol's session days and store them, partition by partition.

Historical days go to Polygon in coalesced windows (about 50 sessions per request); each
window's partitions and the checkpoint are committed together, so a killed fetch resumes after
the last committed window and never leaves a partition half written.

Every window's bars go through `core.clean` (explicit rules for bad provider data, counted per
rule in `SymbolIngest.rejected`). Only sessions left with at least one clean bar are replaced:
a session the provider served nothing usable for keeps what the archive has (never lose bars)
and is listed in `empty_days`.

The ledger/clean/write steps (`start_window`, `fail_window`, `store_window`) are shared by every
history provider: Polygon here, Alpaca's multi-symbol batches in `ingest.alpaca`, and the
provider routing with fallback in `ingest.history`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.config import HISTORY_PROVIDERS
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
    # The provider(s) that served this symbol, in the order used ("polygon,alpaca" when the
    # fallback took over part of the range).
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
    # Providers that were unavailable for this symbol (PROVIDER_UNAVAILABLE: retries exhausted,
    # circuit breaker open, or not configured), in the order tried.
    unavailable: list[str] = field(default_factory=list)
    # Keep extended-hours (04:00-20:00 ET) m15 bars too (SWIFTBOLT_EXTENDED_HOURS).
    extended_hours: bool = False

    def note_cleaning(self, report: CleanReport) -> None:
        self.cleaning.add(report)
        merge_counts(self.rejected, report.rejected())

    def note_provider(self, provider: str) -> None:
        """Record that `provider` served (part of) this symbol."""
        used = [p for p in self.provider.split(",") if p]
        if provider not in used:
            self.provider = ",".join([*used, provider])

    @property
    def fallback_used(self) -> bool:
        return bool(self.unavailable) and any(
            p not in self.unavailable for p in self.provider.split(",") if p
        )

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
    """Fetch and store m15 bars of `symbol` for historical session `days` from Polygon alone
    (no fallback; `ingest.history.ingest_history_routed` routes between providers)."""
    result = SymbolIngest(symbol=symbol, days=sorted(days), provider=polygon.provider)
    todo = skip_resumed(conn, symbol, result)
    windows = plan_requests(todo)
    result.expected_requests = len(windows)
    received = 0
    for window in windows:
        received += fetch_window(conn, polygon, run_id, symbol_id, window, result)
    finish_symbol(conn, result, planned=bool(windows), received=received, todo=todo)
    return result


def fetch_window(
    conn: psycopg.Connection,
    polygon: PolygonClient,
    run_id: str,
    symbol_id: int,
    window: RequestWindow,
    result: SymbolIngest,
) -> int:
    """One planned Polygon request (plus the pages and retries it takes); returns bars
    received."""
    stats = RequestStats()
    fetch_id = start_window(conn, run_id, polygon.provider, result.symbol, window, expected=1)
    try:
        raw = polygon.fetch_m15(result.symbol, window.first, window.last, stats)
    except ProviderError as exc:
        fail_window(conn, fetch_id, stats.requests, exc)
        raise
    finally:
        result.stats.add(stats)
    store_window(conn, polygon.provider, fetch_id, symbol_id, window, raw, stats, result)
    return raw.height


def start_window(
    conn: psycopg.Connection,
    run_id: str,
    provider: str,
    symbol: str,
    window: RequestWindow,
    *,
    expected: int,
) -> int:
    """The ledger row of one symbol-window fetch, committed before anything is sent."""
    fetch_id = ledger.start_fetch(
        conn,
        run_id=run_id,
        provider=provider,
        symbol=symbol,
        timeframe=Timeframe.M15.value,
        first=window.first,
        last=window.last,
        expected_cost=expected,
    )
    conn.commit()
    return fetch_id


def fail_window(conn: psycopg.Connection, fetch_id: int, requests: int, exc: ProviderError) -> None:
    ledger.finish_fetch(
        conn,
        fetch_id,
        actual_cost=requests,
        rows_written=0,
        error_code=exc.code,
        error_message=exc.message,
    )
    conn.commit()


def store_window(
    conn: psycopg.Connection,
    provider: str,
    fetch_id: int,
    symbol_id: int,
    window: RequestWindow,
    raw: pl.DataFrame,
    stats: RequestStats,
    result: SymbolIngest,
) -> None:
    """Clean one window's raw bars and replace its partitions, with the checkpoint and the
    ledger row in the same transaction. `stats` is this fetch's cost (for the ledger).

    Raises MALFORMED_RESPONSE (ledger row failed, nothing stored) for off-grid bars."""
    symbol = result.symbol
    sessions = [calendar.session(day) for day in window.sessions]
    bars, report = clean_m15(raw, sessions, extended_hours=result.extended_hours)
    result.note_cleaning(report)
    if report.wrong_interval:
        exc = wrong_interval_error(provider, report, stats.requests)
        fail_window(conn, fetch_id, stats.requests, exc)
        raise exc
    if report.rejected():
        log.warning(
            "%s %s..%s: dropped %d bad bar(s) from %s: %s",
            symbol, window.first, window.last, report.rejected_total, provider,
            ", ".join(f"{rule}={n}" for rule, n in report.rejected().items()),
        )  # fmt: skip
    days = written_days(bars, window.sessions)
    if not days:
        # Nothing usable served: keep whatever the archive has for these days (never lose bars).
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=0)
        conn.commit()
        result.empty_days.extend(window.sessions)
        return
    with conn.transaction():
        rows = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.M15,
            days=days,
            bars=bars,
            provider=provider,
            is_intraday=False,
        )
        # Committed with the bars: a killed fetch resumes after this window.
        ledger.advance_checkpoint(
            conn,
            provider,
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
        "%s %s..%s: %d bars from %s in %d request(s), waited %.1fs for tokens",
        symbol, window.first, window.last, rows, provider, stats.requests, stats.token_wait_s,
    )  # fmt: skip


def finish_symbol(
    conn: psycopg.Connection,
    result: SymbolIngest,
    *,
    planned: bool,
    received: int,
    todo: Sequence[date],
) -> None:
    """After every window of a symbol: SYMBOL_NOT_FOUND when no provider served a single bar,
    else the fetch is complete and its checkpoints go."""
    if planned and received == 0:
        raise ProviderError(
            SYMBOL_NOT_FOUND,
            f"no bars for {result.symbol} from {todo[0]} to {todo[-1]}: unknown or untraded ticker",
            provider=result.provider,
            requests=result.stats.requests,
        )
    for provider in HISTORY_PROVIDERS:
        ledger.clear_checkpoint(conn, provider, result.symbol, Timeframe.M15.value)
    conn.commit()


def skip_resumed(conn: psycopg.Connection, symbol: str, result: SymbolIngest) -> list[date]:
    """Days still to fetch: those a killed fetch of this symbol already committed (through any
    history provider, e.g. Polygon before a fallback to Alpaca) are skipped."""
    todo = result.days
    for provider in HISTORY_PROVIDERS:
        saved = ledger.checkpoint(conn, provider, symbol, Timeframe.M15.value)
        if saved is None:
            continue
        range_start, last_ts = saved
        done_through = calendar.exchange_date(last_ts)
        todo = [d for d in todo if not (range_start <= d <= done_through)]
        log.info("%s: resuming after %s (%s)", symbol, done_through, provider)
    result.resumed_days = len(result.days) - len(todo)
    if result.resumed_days:
        log.info("%s: %d day(s) already stored", symbol, result.resumed_days)
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
