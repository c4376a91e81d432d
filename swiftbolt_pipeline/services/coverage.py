"""Coverage: which sessions of a symbol's window hold bars, what is in flight in Dagster, and
which contiguous ranges still need a backfill. Shared by `swiftbolt coverage`, the HTTP API
and `coverage_gap_sensor` (one implementation, several front doors)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import psycopg
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
)

from swiftbolt_pipeline.config import PipelineClock
from swiftbolt_pipeline.core import calendar, completeness
from swiftbolt_pipeline.core.completeness import NOTHING, REGULAR_BUCKET_MINUTES, SessionState
from swiftbolt_pipeline.core.daily import DAILY_TIMEFRAMES
from swiftbolt_pipeline.core.gaps import Gap, find_gaps, window_sessions
from swiftbolt_pipeline.core.models import RAW_BAR_MINUTES, Timeframe
from swiftbolt_pipeline.core.planning import keyed_symbol_batches
from swiftbolt_pipeline.names import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SYMBOLS_PARTITIONS,
    days_by_symbol,
    parse_partition_key,
)
from swiftbolt_pipeline.storage import ledger
from swiftbolt_pipeline.storage.coverage import (
    confirmed_empty_days,
    incomplete_sessions,
    session_states,
)
from swiftbolt_pipeline.storage.m5 import m5_session_states
from swiftbolt_pipeline.storage.watchlist import WatchedSymbol

FIRST_BAR = timedelta(minutes=15)
QUEUED_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
RUNNING_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class InflightRange:
    """The symbols x days rectangle of a queued or running run or an unfinished backfill."""

    symbols: frozenset[str]
    first_day: date
    last_day: date
    running: bool

    def covers(self, symbol: str, day: date) -> bool:
        return symbol in self.symbols and self.first_day <= day <= self.last_day


def _range_of(run: dg.DagsterRun, order: Sequence[str], running: bool) -> InflightRange | None:
    """A run's rectangle: its range tags' symbols and every symbol partition between them in
    Dagster's order of the dynamic partitions (not alphabetical), by the days between."""
    try:
        start_symbol, start_day = parse_partition_key(run.tags.get(RANGE_START_TAG, ""))
        end_symbol, end_day = parse_partition_key(run.tags.get(RANGE_END_TAG, ""))
    except ValueError:  # not a range of bar partitions
        return None
    symbols = {start_symbol, end_symbol}
    if start_symbol in order and end_symbol in order:
        symbols.update(order[order.index(start_symbol) : order.index(end_symbol) + 1])
    return InflightRange(frozenset(symbols), start_day, end_day, running)


def inflight_ranges(instance: dg.DagsterInstance) -> list[InflightRange]:
    """Queued and running runs' ranges, then unfinished backfills' (one requested a moment ago
    has no run yet), in three queries (each storage query costs a connection)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=QUEUED_STATUSES + RUNNING_STATUSES))
    order = list(instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)) if runs else []
    return [
        found
        for run in runs
        if (found := _range_of(run, order, running=run.status in RUNNING_STATUSES)) is not None
    ] + _backfill_ranges(instance)


def _backfill_ranges(instance: dg.DagsterInstance) -> list[InflightRange]:
    """Per symbol, the days an unfinished asset backfill targets (first to last)."""
    unfinished = [s for s in BulkActionStatus if s not in BULK_ACTION_TERMINAL_STATUSES]
    ranges = []
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=unfinished)):
        if backfill.asset_backfill_data is None:
            continue  # not an asset backfill: its runs carry range tags
        target = backfill.asset_backfill_data.target_subset
        keys = {str(key) for _, key in target.iterate_asset_partitions() if key}
        for symbol, days in days_by_symbol(sorted(k for k in keys if _is_day_key(k))).items():
            ranges.append(InflightRange(frozenset([symbol]), days[0], days[-1], running=False))
    return ranges


def _is_day_key(key: str) -> bool:
    """A symbol x session key (a daily asset's symbol x year key is not one)."""
    try:
        parse_partition_key(key)
    except ValueError:
        return False
    return True


def reap_dead_runs(instance: dg.DagsterInstance, conn: psycopg.Connection) -> list[str]:
    """Runs Dagster still thinks are running whose worker is known dead (a SIGKILLed worker, a
    connection cut by a database restart: see `ledger.dead_runs`) are marked failed and their
    pool slots freed, so they neither block the pool forever nor keep their range "in flight".
    Fetches of dead processes are marked abandoned first. Returns the failed runs' ids."""
    ledger.abandon_orphans(conn)
    running = instance.get_runs(filters=dg.RunsFilter(statuses=RUNNING_STATUSES))
    dead = set(ledger.dead_runs(conn, [run.run_id for run in running]))
    for run in running:
        if run.run_id in dead:
            instance.report_run_failed(run, "its worker died: a fetch's database session ended")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return sorted(dead)


def expected_sessions(
    settings: PipelineClock, window_days: int, timeframe: Timeframe = Timeframe.M15
) -> list[date]:
    """Sessions of the window that can hold bars now: today's counts once its first
    15-minute bar is complete and an intraday provider is configured (the intraday schedule
    then keeps it fresh); without one, today waits for the history provider.

    Daily timeframes (d1, w1, mo1) reach back to the daily depth's start instead of the
    intraday window (a session before it is no gap), and today's official daily bar exists
    only once the session is over."""
    if timeframe in DAILY_TIMEFRAMES:
        daily = window_sessions(settings.today, window_days, settings.daily_start)
        return [d for d in daily if d < settings.today]
    sessions = window_sessions(settings.today, window_days, settings.history_start)
    if sessions and sessions[-1] == settings.today:
        first_bar_done = calendar.session(settings.today).open + FIRST_BAR
        if not settings.intraday_configured or settings.now() < first_bar_done:
            sessions.pop()
    return sessions


@dataclass(frozen=True)
class Coverage:
    symbol: str
    timeframe: Timeframe
    window_days: int
    sessions: list[date]
    complete: frozenset[date]
    bars: int
    running: int
    queued: int

    @property
    def gaps(self) -> list[Gap]:
        return find_gaps(self.sessions, self.complete)

    @property
    def status(self) -> str:
        if self.running or self.queued:
            return "backfill_running"
        return "gaps_detected" if self.gaps else "coverage_complete"

    def to_json(self) -> dict[str, object]:
        total = len(self.sessions)
        completed = len(self.complete)
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe.value,
            "window_days": self.window_days,
            "status": self.status,
            "backfill_progress": {
                "total_slices": total,
                "completed_slices": completed,
                "running_slices": self.running,
                "queued_slices": self.queued,
                "progress_percent": round(100 * completed / total, 1) if total else 100.0,
                "bars_written": self.bars,
            },
            "gaps": [gap.to_json() for gap in self.gaps],
        }


def complete_sessions(
    states: dict[date, SessionState],
    timeframe: Timeframe,
    settings: PipelineClock,
    answered_empty: frozenset[date] = frozenset(),
) -> frozenset[date]:
    """`answered_empty`: daily timeframes only, the sessions the provider's daily answer had
    no bar for (a halt, before a listing): complete without one."""
    now, today = settings.now(), settings.today
    if timeframe in DAILY_TIMEFRAMES:  # w1/mo1 are rolled up from the d1 they follow
        return frozenset(
            day
            for day, state in states.items()
            if state.derived.get(Timeframe.D1, NOTHING).bars or day in answered_empty
        )
    return frozenset(
        day
        for day, state in states.items()
        if completeness.complete(
            state, timeframe, final_required=day < today and completeness.final_required(day, now)
        )
    )


def coverage_report(
    conn: psycopg.Connection,
    instance: dg.DagsterInstance | None,
    settings: PipelineClock,
    *,
    symbol: str,
    symbol_id: int | None,
    timeframe: Timeframe,
    window_days: int,
) -> Coverage:
    """Per session of the window: complete for `timeframe` (see `core.completeness`)?"""
    sessions = expected_sessions(settings, window_days, timeframe)
    complete: frozenset[date] = frozenset()
    bars = 0
    if symbol_id is not None and sessions:
        read = m5_session_states if timeframe == Timeframe.M5 else session_states
        states = read(conn, [symbol_id], sessions)[symbol_id]
        answered_empty = frozenset(
            confirmed_empty_days(conn, symbol_id, Timeframe.D1, sessions[0], sessions[-1])
            if timeframe in DAILY_TIMEFRAMES
            else ()
        )
        complete = complete_sessions(states, timeframe, settings, answered_empty)
        bars = sum(
            (s.raw if timeframe in RAW_BAR_MINUTES else s.derived.get(timeframe, NOTHING)).bars
            for s in states.values()
        )
    running = queued = 0
    if instance is not None:
        ranges = [r for r in inflight_ranges(instance) if symbol in r.symbols]
        for day in sessions:
            if day in complete:
                continue
            covering = [r for r in ranges if r.covers(symbol, day)]
            if any(r.running for r in covering):
                running += 1
            elif covering:
                queued += 1
    return Coverage(symbol, timeframe, window_days, sessions, complete, bars, running, queued)


@dataclass(frozen=True)
class GapRequest:
    """One run to request: `fetch` (raw bars from the providers, then derived) or, when only
    derived bars are missing or stale, derive from the stored m15 bars (no request)."""

    symbol: str
    gap: Gap
    priority: int
    fetch: bool


# Per symbol id, its incomplete sessions, each with the timeframes incomplete there (see
# `storage.coverage.incomplete_sessions`); a session not listed is complete.
Incomplete = Mapping[int, Mapping[date, Collection[Timeframe]]]


def incomplete_watchlist(
    conn: psycopg.Connection,
    watched: Sequence[WatchedSymbol],
    settings: PipelineClock,
    *,
    raw: Timeframe = Timeframe.M15,
    bucket_minutes: Mapping[Timeframe, int] = REGULAR_BUCKET_MINUTES,
) -> dict[int, dict[date, frozenset[Timeframe]]]:
    """The incomplete sessions of `watched` over the widest window, judged in one query:
    the intraday `raw` timeframe and the timeframes derived from it (`bucket_minutes`)."""
    if not watched:
        return {}
    widest = max(s.window_days for s in watched)
    sessions = window_sessions(settings.today, widest, settings.history_start)
    now, today = settings.now(), settings.today
    return incomplete_sessions(
        conn,
        [s.id for s in watched],
        sessions,
        final=lambda day: day < today and completeness.final_required(day, now),
        raw=raw,
        bucket_minutes=bucket_minutes,
    )


def gaps_to_request(
    watched: Sequence[WatchedSymbol],
    incomplete: Incomplete,
    settings: PipelineClock,
    excluded: Iterable[InflightRange],
) -> list[GapRequest]:
    """Contiguous incomplete ranges per watched symbol, minus what is in flight, highest
    priority first. A symbol whose fetch failed waits until its `retry_after`; one that has
    answered SYMBOL_NOT_FOUND gets a one-session probe instead of its whole range."""
    return gap_requests(
        watched,
        incomplete,
        settings,
        excluded,
        expected=lambda window_days: expected_sessions(settings, window_days),
        gaps=find_gaps,
    )


def gap_requests(
    watched: Iterable[WatchedSymbol],
    incomplete: Incomplete,
    settings: PipelineClock,
    excluded: Iterable[InflightRange],
    *,
    expected: Callable[[int], Sequence[date]],
    gaps: Callable[[Sequence[date], Collection[date]], list[Gap]],
    raw: Timeframe = Timeframe.M15,
) -> list[GapRequest]:
    """The gap requests of `watched` on one market's calendar (NYSE sessions or crypto's UTC
    days): of its `expected` days per window, the `incomplete` ones (judged over every expected
    day) need a fetch where `raw` bars are incomplete, else a derive; `gaps` groups them into
    ranges. Only incomplete days are visited, so the work follows the gaps."""
    excluded = list(excluded)
    now = settings.now()
    windows: dict[int, frozenset[date]] = {}
    requests: list[GapRequest] = []
    for symbol in watched:
        if symbol.retry_after is not None and symbol.retry_after > now:
            continue
        if symbol.window_days not in windows:
            windows[symbol.window_days] = frozenset(expected(symbol.window_days))
        window = windows[symbol.window_days]
        mine = [r for r in excluded if symbol.ticker in r.symbols]
        fetch: list[date] = []
        derive: list[date] = []
        for day, timeframes in sorted(incomplete.get(symbol.id, {}).items()):
            if (
                day not in window
                or not timeframes
                or any(r.covers(symbol.ticker, day) for r in mine)
            ):
                continue
            (fetch if raw in timeframes else derive).append(day)
        if symbol.not_found_streak and fetch:
            fetch = fetch[-1:]
        for days, is_fetch in ((fetch, True), (derive, False)):
            requests.extend(
                GapRequest(symbol.ticker, gap, symbol.priority, is_fetch) for gap in gaps(days, ())
            )
    return sorted(requests, key=lambda r: (-r.priority, r.symbol, r.gap.start))


@dataclass(frozen=True)
class GapBatch:
    """One run to request for `symbols` (one, or neighbours in the symbol partitions' order)
    sharing the same gap, priority and kind (fetch or derive)."""

    symbols: tuple[str, ...]
    gap: Gap
    priority: int
    fetch: bool


def batch_gaps(gaps: Sequence[GapRequest], order: Sequence[str], size: int) -> list[GapBatch]:
    """Gaps grouped into runs: one per symbol when the history provider serves one symbol per
    request (`size` 1); else the symbols sharing a gap, priority and kind, up to `size` per
    run, each run a stretch of neighbours in `order` (Dagster's order of the symbol
    partitions) so that it covers exactly them. A symbol that is no partition yet waits: its
    place in `order` is known once it is one."""
    if size == 1:
        return [GapBatch((g.symbol,), g.gap, g.priority, g.fetch) for g in gaps]
    batches = [
        GapBatch(tuple(batch), gap, priority, fetch)
        for (gap, priority, fetch), batch in keyed_symbol_batches(
            order, (((g.gap, g.priority, g.fetch), g.symbol) for g in gaps), size
        )
    ]
    return sorted(batches, key=lambda b: (-b.priority, b.gap.start, b.symbols[0]))
