"""Coverage: which sessions of a symbol's window hold bars, what is in flight in Dagster, and
which contiguous ranges still need a backfill. Shared by `swiftbolt coverage`, the HTTP API
and `coverage_gap_sensor` (one implementation, several front doors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.gaps import Gap, find_gaps, window_sessions
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import bars as bar_store

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
FIRST_BAR = timedelta(minutes=15)
QUEUED_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
RUNNING_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class InflightRange:
    """The symbol x day rectangle of a queued or running run (ranges are per dimension)."""

    first_symbol: str
    last_symbol: str
    first_day: date
    last_day: date
    running: bool

    def covers(self, symbol: str, day: date) -> bool:
        return (
            self.first_symbol <= symbol <= self.last_symbol
            and self.first_day <= day <= self.last_day
        )


def _range_of(run: dg.DagsterRun, running: bool) -> InflightRange | None:
    start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if not start or not end or "|" not in start or "|" not in end:
        return None
    start_day, start_symbol = start.split("|")
    end_day, end_symbol = end.split("|")
    return InflightRange(
        start_symbol,
        end_symbol,
        date.fromisoformat(start_day),
        date.fromisoformat(end_day),
        running,
    )


def inflight_ranges(instance: dg.DagsterInstance) -> list[InflightRange]:
    """Queued and running runs' ranges, in one query (each storage query costs a connection)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=QUEUED_STATUSES + RUNNING_STATUSES))
    return [
        found
        for run in runs
        if (found := _range_of(run, running=run.status in RUNNING_STATUSES)) is not None
    ]


def recently_failed(instance: dg.DagsterInstance, since: datetime) -> list[InflightRange]:
    """Ranges of runs that failed after `since`: not re-requested until they cool down."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since)
    )
    return [r for r in (_range_of(run, False) for run in runs) if r]


def expected_sessions(settings: Settings, window_days: int) -> list[date]:
    """Sessions of the window that can hold bars now: today's counts once its first
    15-minute bar is complete (the intraday schedule then keeps it fresh)."""
    sessions = window_sessions(settings.today, window_days, settings.history_start)
    if sessions and sessions[-1] == settings.today:
        first_bar_done = calendar.session(settings.today).open + FIRST_BAR
        if settings.now() < first_bar_done:
            sessions.pop()
    return sessions


@dataclass(frozen=True)
class Coverage:
    symbol: str
    timeframe: Timeframe
    window_days: int
    sessions: list[date]
    present: dict[date, int]
    running: int
    queued: int

    @property
    def gaps(self) -> list[Gap]:
        return find_gaps(self.sessions, self.present)

    @property
    def status(self) -> str:
        if self.running or self.queued:
            return "backfill_running"
        return "gaps_detected" if self.gaps else "coverage_complete"

    def to_json(self) -> dict[str, object]:
        total = len(self.sessions)
        completed = sum(1 for day in self.sessions if day in self.present)
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
                "bars_written": sum(self.present.values()),
            },
            "gaps": [gap.to_json() for gap in self.gaps],
        }


def coverage_report(
    conn: psycopg.Connection,
    instance: dg.DagsterInstance | None,
    settings: Settings,
    *,
    symbol: str,
    symbol_id: int | None,
    timeframe: Timeframe,
    window_days: int,
) -> Coverage:
    sessions = expected_sessions(settings, window_days)
    present: dict[date, int] = {}
    if symbol_id is not None and sessions:
        present = bar_store.sessions_with_bars(
            conn, symbol_id, timeframe, sessions[0], sessions[-1]
        )
    running = queued = 0
    if instance is not None:
        ranges = [r for r in inflight_ranges(instance) if r.first_symbol <= symbol <= r.last_symbol]
        for day in sessions:
            if day in present:
                continue
            covering = [r for r in ranges if r.covers(symbol, day)]
            if any(r.running for r in covering):
                running += 1
            elif covering:
                queued += 1
    return Coverage(symbol, timeframe, window_days, sessions, present, running, queued)


@dataclass(frozen=True)
class GapRequest:
    symbol: str
    gap: Gap
    priority: int


def gaps_to_request(
    watch: Sequence[tuple[str, int, int, int]],
    covered: dict[int, dict[date, int]],
    settings: Settings,
    excluded: Iterable[InflightRange],
) -> list[GapRequest]:
    """Contiguous missing ranges per watched symbol (ticker, id, window_days, priority),
    minus what is in flight or recently failed, highest priority first."""
    excluded = list(excluded)
    requests: list[GapRequest] = []
    for ticker, symbol_id, window_days, priority in watch:
        sessions = [
            day
            for day in expected_sessions(settings, window_days)
            if not any(r.covers(ticker, day) for r in excluded)
        ]
        present = covered.get(symbol_id, {})
        requests.extend(GapRequest(ticker, gap, priority) for gap in find_gaps(sessions, present))
    return sorted(requests, key=lambda r: (-r.priority, r.symbol, r.gap.start))
