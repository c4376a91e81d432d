"""The one write path of raw bars (m15, and m5 for opted-in symbols), for every provider:
clean, replace partitions, confirm. A `SymbolIngest`'s `timeframe` says which raw series a
fetch writes; each has its own partitions, confirmations, ledger rows and checkpoints.

A `WindowStore` takes one request window's bars as they arrive, page by page. Every session
the bars have moved past is complete: it is cleaned, replaced and committed with the
checkpoint, so a fetch killed mid-window resumes after the last stored session instead of
fetching the window again. The last, possibly partial session waits for the next page.

Every batch goes through `core.clean` (explicit rules for bad provider data, counted per rule
in `SymbolIngest.rejected`). Only sessions left with at least one clean bar are replaced. A
past session the history provider answered with nothing usable is confirmed empty (a halt,
before a listing, after a delisting: no gap, never requested again), except that final bars
already stored are kept; today's session (Tradier, provisional) keeps what is stored.

A symbol's empty sessions are confirmed only once the provider is known to serve the symbol
(it had stored bars, or served some in this fetch): an unknown ticker answers every session
empty, and that is SYMBOL_NOT_FOUND, not a run of confirmed empty sessions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clean import OFF_GRID, CleanReport, clean_m15, merge_counts
from swiftbolt_pipeline.core.errors import (
    MALFORMED_RESPONSE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
from swiftbolt_pipeline.core.models import BAR_SCHEMA, RAW_BAR_MINUTES, Provider, Timeframe
from swiftbolt_pipeline.core.planning import RequestWindow
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.registry import HISTORY_PROVIDERS
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import coverage, ledger, watchlist

log = logging.getLogger(__name__)


@dataclass
class SymbolIngest:
    """What one symbol's fetch did, for metadata, the ledger summary and the CLI."""

    symbol: str
    days: list[date]
    # The raw series written: m15, or m5 for an opted-in symbol.
    timeframe: Timeframe = Timeframe.M15
    # The providers that served this symbol, in the order used (two when the fallback took
    # over part of the range).
    providers: tuple[Provider, ...] = ()
    bars_written: int = 0
    # Bars the providers served (before cleaning): 0 over a whole fetch is SYMBOL_NOT_FOUND.
    received: int = 0
    expected_cost: int = 0
    stats: RequestStats = field(default_factory=RequestStats)
    resumed_days: int = 0
    # Sessions answered with nothing usable (confirmed empty when in the past).
    empty_days: list[date] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None
    # Bars dropped as bad provider data, per `core.clean` rule (non-zero counts only).
    rejected: dict[str, int] = field(default_factory=dict)
    # Every rule's count incl. the routine ones (extended hours, identical duplicates).
    cleaning: CleanReport = field(default_factory=CleanReport)
    # Providers that were unavailable for this symbol (PROVIDER_UNAVAILABLE: retries exhausted,
    # circuit breaker open, or not configured), in the order tried.
    unavailable: list[Provider] = field(default_factory=list)
    # Keep extended-hours (04:00-20:00 ET) m15 bars too (SWIFTBOLT_EXTENDED_HOURS).
    extended_hours: bool = False
    # Why this symbol failed (the other symbols of a run are unaffected); None on success.
    error: ProviderError | None = None
    # The provider serves this symbol: it had stored final bars, or served some now.
    known: bool = False
    # Empty past sessions waiting for `known` before they are confirmed, per provider.
    unconfirmed: dict[Provider, list[date]] = field(default_factory=dict)
    # Level of the line each window of this symbol logs (a run's Dagster log keeps INFO lines:
    # a universe of thousands logs its members' windows at DEBUG, or its event log would grow
    # with members x windows).
    detail_log_level: int = logging.INFO

    def note_cleaning(self, report: CleanReport) -> None:
        self.cleaning.add(report)
        merge_counts(self.rejected, report.rejected())

    def note_provider(self, provider: Provider) -> None:
        """Record that `provider` served (part of) this symbol."""
        if provider not in self.providers:
            self.providers = (*self.providers, provider)

    def note_span(self, bars: pl.DataFrame) -> None:
        if bars.height:
            first, last = str(bars["ts"].min()), str(bars["ts"].max())
            self.first_ts = min(filter(None, [self.first_ts, first]))
            self.last_ts = max(filter(None, [self.last_ts, last]))

    @property
    def fallback_used(self) -> bool:
        return bool(self.unavailable) and any(p not in self.unavailable for p in self.providers)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class WindowStore:
    """Stores one window's bars of one symbol as they arrive (see the module docstring).

    Every page's bars are kept until the window ends, so a session is always written from
    everything served for it: when a later page brings more bars of an already stored session
    (a cursor that serves a page twice), that session is written again from all of them, and
    the cleaning counts are taken once, over the whole window, as if it came in one page.

    `is_intraday`: provisional bars of today's session (no checkpoint, nothing confirmed)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        *,
        provider: Provider,
        fetch_id: int,
        symbol_id: int,
        window: RequestWindow,
        result: SymbolIngest,
        is_intraday: bool = False,
    ) -> None:
        self.conn = conn
        self.provider = provider
        self.fetch_id = fetch_id
        self.symbol_id = symbol_id
        self.window = window
        self.result = result
        self.is_intraday = is_intraday
        self.rows = 0
        self._pages: list[pl.DataFrame] = []
        self._stored: set[date] = set()  # sessions written so far
        self._touched: set[date] = set()  # stored sessions that got more bars since
        self._rows_of: dict[date, int] = {}  # rows written per stored session
        self._newest: date | None = None  # the newest session day served so far

    @classmethod
    def start(
        cls,
        conn: psycopg.Connection,
        run_id: str,
        provider: Provider,
        symbol_id: int,
        window: RequestWindow,
        result: SymbolIngest,
        *,
        expected: int = 1,
        is_intraday: bool = False,
    ) -> WindowStore:
        """A store for (its share of) one planned request, its ledger row committed before
        anything is sent."""
        result.expected_cost += expected
        fetch_id = ledger.start_fetch(
            conn,
            run_id=run_id,
            provider=provider,
            symbol=result.symbol,
            timeframe=result.timeframe.value,
            first=window.first,
            last=window.last,
            expected_cost=expected,
        )
        conn.commit()
        return cls(
            conn,
            provider=provider,
            fetch_id=fetch_id,
            symbol_id=symbol_id,
            window=window,
            result=result,
            is_intraday=is_intraday,
        )

    def add(self, page: pl.DataFrame, stats: RequestStats) -> None:
        """One page. The sessions the earlier pages completed are stored now, before it is
        taken in: a window served in one page (the usual case) is cleaned and written once,
        at `finish`."""
        self.flush(stats)
        self.result.received += page.height
        if page.is_empty():
            return
        self._pages.append(page)
        days = set(_exchange_days(page))
        self._touched |= days & self._stored
        self._newest = max(days) if self._newest is None else max(self._newest, max(days))

    def flush(self, stats: RequestStats) -> None:
        """Store every session the pages so far moved past (the newest one may continue on
        the next page); also when a later request fails, so a resumed fetch starts after
        them."""
        if self._newest is None:
            return
        ready = [d for d in self.window.sessions if d < self._newest and self._due(d)]
        if ready:
            self._store(ready, stats)

    def finish(self, stats: RequestStats) -> None:
        """The window's last page arrived: store the rest, count what the cleaning rules
        dropped (over the whole window, as if served in one page), and close the ledger row."""
        served = pl.concat(self._pages) if self._pages else pl.DataFrame(schema=BAR_SCHEMA)
        sessions = [calendar.session(d) for d in self.window.sessions]
        whole = clean_m15(
            served,
            sessions,
            extended_hours=self.result.extended_hours,
            bar_minutes=RAW_BAR_MINUTES[self.result.timeframe],
        )
        ready = [d for d in self.window.sessions if self._due(d)]
        if ready:
            # Nothing stored yet: the whole window's cleaning is this write's too.
            self._store(ready, stats, cleaned=None if self._stored else whole)
        _, report = whole
        self.result.note_cleaning(report)
        if report.rejected():
            log.warning(
                "%s %s..%s: dropped %d bad bar(s) from %s: %s",
                self.result.symbol, self.window.first, self.window.last, report.rejected_total,
                self.provider, ", ".join(f"{rule}={n}" for rule, n in report.rejected().items()),
            )  # fmt: skip
        ledger.finish_fetch(
            self.conn, self.fetch_id, actual_cost=stats.requests, rows_written=self.rows
        )
        self.conn.commit()
        log.log(
            self.result.detail_log_level,
            "%s %s..%s: %d bars from %s in %d request(s), waited %.1fs for tokens",
            self.result.symbol, self.window.first, self.window.last, self.rows, self.provider,
            stats.requests, stats.token_wait_s,
        )  # fmt: skip

    def fail(self, stats: RequestStats, exc: ProviderError) -> None:
        """Close the ledger row as failed; sessions already committed stay."""
        ledger.finish_fetch(
            self.conn,
            self.fetch_id,
            actual_cost=stats.requests,
            rows_written=self.rows,
            error_code=exc.code,
            error_message=exc.message,
        )
        self.conn.commit()

    def _due(self, day: date) -> bool:
        return day not in self._stored or day in self._touched

    def _store(
        self,
        days: list[date],
        stats: RequestStats,
        *,
        cleaned: tuple[pl.DataFrame, CleanReport] | None = None,
    ) -> None:
        """Clean everything served for `days` (unless `cleaned` already holds exactly that)
        and commit those partitions with the checkpoint.

        Raises MALFORMED_RESPONSE (nothing of these days stored) for off-grid bars."""
        result = self.result
        sessions = [calendar.session(d) for d in days]
        bar_minutes = RAW_BAR_MINUTES[result.timeframe]
        if cleaned is None:
            served = pl.concat(self._pages) if self._pages else pl.DataFrame(schema=BAR_SCHEMA)
            served = served.filter(_exchange_day(pl.col("ts")).is_in(days))
            cleaned = clean_m15(
                served, sessions, extended_hours=result.extended_hours, bar_minutes=bar_minutes
            )
        bars, report = cleaned
        if report.wrong_interval:
            raise wrong_interval_error(self.provider, report, stats.requests, bar_minutes)
        counts = _bars_per_day(bars)
        written = [d for d in days if counts.get(d)]
        empty = [d for d in days if not counts.get(d) and d not in self._stored]
        with self.conn.transaction():
            rows = 0
            if written:
                rows = bar_store.replace_partitions(
                    self.conn,
                    symbol_id=self.symbol_id,
                    timeframe=result.timeframe,
                    days=written,
                    bars=bars,
                    provider=self.provider,
                    is_intraday=self.is_intraday,
                )
            if not self.is_intraday:
                result.known = result.known or bool(written)
                coverage.confirm_sessions(
                    self.conn,
                    symbol_id=self.symbol_id,
                    timeframe=result.timeframe,
                    bars_per_day={d: counts[d] for d in written},
                    provider=self.provider,
                )
                result.unconfirmed.setdefault(self.provider, []).extend(empty)
                if result.known:
                    confirm_pending_empty(self.conn, self.symbol_id, result)
                # Committed with the bars: a killed fetch resumes after these sessions.
                ledger.advance_checkpoint(
                    self.conn,
                    self.provider,
                    result.symbol,
                    result.timeframe.value,
                    range_start=result.days[0],
                    last_ts=max(s.close for s in sessions),
                    bars=rows,
                )
        self.conn.commit()
        rewritten = self._stored & set(days)
        self.rows += rows - sum(self._rows_of.get(d, 0) for d in rewritten)
        result.bars_written += rows - sum(self._rows_of.get(d, 0) for d in rewritten)
        self._rows_of.update({d: counts.get(d, 0) for d in days})
        self._stored |= set(days)
        self._touched -= set(days)
        result.empty_days.extend(empty)
        result.note_span(bars)
        log.debug(
            "%s %s..%s: %d bars from %s stored", result.symbol, days[0], days[-1], rows,
            self.provider,
        )  # fmt: skip


def confirm_pending_empty(conn: psycopg.Connection, symbol_id: int, result: SymbolIngest) -> None:
    """Confirm the empty sessions waiting for the symbol to be known (in the caller's
    transaction)."""
    for provider, days in result.unconfirmed.items():
        coverage.confirm_empty(
            conn, symbol_id=symbol_id, timeframe=result.timeframe, days=days, provider=provider
        )
    result.unconfirmed.clear()


def prepare_symbol(conn: psycopg.Connection, symbol_id: int, result: SymbolIngest) -> list[date]:
    """Before a symbol's fetch: is it known to the provider, and which days are left after a
    killed fetch's committed sessions (through any history provider, e.g. Polygon before a
    fallback to Alpaca)."""
    result.known = bar_store.has_final_bars(conn, symbol_id, result.timeframe)
    todo = result.days
    for provider in HISTORY_PROVIDERS:
        saved = ledger.checkpoint(conn, provider, result.symbol, result.timeframe.value)
        if saved is None:
            continue
        range_start, last_ts = saved
        done_through = calendar.exchange_date(last_ts)
        todo = [d for d in todo if not (range_start <= d <= done_through)]
        log.info("%s: resuming after %s (%s)", result.symbol, done_through, provider)
    result.resumed_days = len(result.days) - len(todo)
    if result.resumed_days:
        log.info("%s: %d day(s) already stored", result.symbol, result.resumed_days)
    return todo


def finish_symbol(
    conn: psycopg.Connection,
    symbol_id: int,
    result: SymbolIngest,
    *,
    planned: bool,
    todo: Sequence[date],
) -> None:
    """After every window of a symbol: its pending empty sessions are confirmed when the
    provider is known to serve it, and its checkpoints go. A fetch that served nothing at all
    is SYMBOL_NOT_FOUND (unknown, delisted, or halted for the whole range): the caller counts
    those answers and parks a symbol that keeps giving them."""
    with conn.transaction():
        if result.known:
            confirm_pending_empty(conn, symbol_id, result)
        for provider in HISTORY_PROVIDERS:
            ledger.clear_checkpoint(conn, provider, result.symbol, result.timeframe.value)
    conn.commit()
    if planned and result.received == 0:
        raise ProviderError(
            SYMBOL_NOT_FOUND,
            f"no bars for {result.symbol} from {todo[0]} to {todo[-1]}: unknown or untraded ticker",
            provider=",".join(result.providers),
            requests=result.stats.requests,
        )


def wrong_interval_error(
    provider: Provider, report: CleanReport, requests: int, bar_minutes: int = 15
) -> ProviderError:
    off_grid = report.counts[OFF_GRID]
    return ProviderError(
        MALFORMED_RESPONSE,
        f"{off_grid} of {off_grid + report.kept} session bars are off the {bar_minutes}-minute "
        "grid: "
        "the response holds another bar size; nothing stored",
        provider=provider,
        requests=requests,
    )


def _exchange_day(ts: pl.Expr) -> pl.Expr:
    return ts.dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date()


def _exchange_days(bars: pl.DataFrame) -> list[date]:
    return bars.select(_exchange_day(pl.col("ts")))["ts"].to_list()


def _bars_per_day(bars: pl.DataFrame) -> dict[date, int]:
    if bars.is_empty():
        return {}
    return dict(bars.select(_exchange_day(pl.col("ts")))["ts"].value_counts().iter_rows())


def window_of(days: Iterable[date]) -> RequestWindow:
    """A window over the given sessions (today's single session, for one)."""
    ordered = tuple(sorted(days))
    return RequestWindow(ordered[0], ordered[-1], ordered, 0)


# How long the gap sensor leaves a symbol alone after its fetch failed, so a dead symbol or a
# provider outage doesn't spin the queue.
FAILURE_COOLDOWN = timedelta(minutes=10)


def record_symbol_outcomes(
    conn: psycopg.Connection, results: Sequence[SymbolIngest], ids: dict[str, int], now: datetime
) -> dict[str, str]:
    """Each symbol's fetch outcome on its `symbols` row (in the caller's transaction): success
    clears its failure, a failure holds the gap sensor off for FAILURE_COOLDOWN, a symbol that
    keeps answering SYMBOL_NOT_FOUND is parked. Returns symbol -> reason of those parked now."""
    parked = {}
    for result in results:
        error = result.error
        reason = watchlist.record_outcome(
            conn,
            ids[result.symbol],
            error_code=error.code if error else None,
            error_message=error.message if error else "",
            now=now,
            retry_after=now + FAILURE_COOLDOWN,
        )
        if reason:
            parked[result.symbol] = reason
    return parked
